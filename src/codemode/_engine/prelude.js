// codemode prelude: evaluated once in every fresh isolate before the script runs.
//
// It installs the model-facing globals (the helpers of codemode/_protocol/helpers.py, whose
// names the host passes in `setup.helpers`, then `tools` and `ALL_TOOLS` with each run), removes
// the ones the sandbox forbids, and opens the channel to the host:
//   * script -> host: JSON messages written into a SharedArrayBuffer ring that Python reads
//     directly, so output is never stuck inside an isolate that is busy in a loop; a ping
//     (one-way native callback) tells the host to look. Messages that do not fit wait in an
//     overflow queue the host drains with `drain()` when the isolate is idle.
//   * host -> script: short scripts calling `__codemode_host__` (run / resolve / fire / live /
//     drain), a
//     script-level const, not a property of globalThis; the host renames it to a random name per
//     process before evaluating this file, so the script can neither name nor find it (nor the
//     ring it holds).
// The isolate is generic until `run`: the session's tools, stored values and store budget come
// with the program, so one pool of prepared isolates serves every session.
// Durable cells: when `run` is given a determinism (seed, recorded clock, replaying flag), every
// non-deterministic input the isolate applies is journaled so a fresh isolate can replay the
// cell: each `resolve` batch (`["b", ids]`), each live timer fire (`["t", id]`), each real clock
// reading (`["d", ms, times]`: repeats of one value in a row are counted); Math.random becomes a PRNG seeded by the host. Entries are written as
// one `{k: "journal"}` message before the next other message, so whatever the host sees is
// preceded by the inputs it depends on. In replay, timers wait for the host's `fire` until `live`.
// Helper errors are thrown as plain strings, as in the reference runtime; `exit()` called from
// anywhere (a getter, a toJSON the helpers invoke) still ends the cell like `exit()`.
// Performance: the functions every exec runs are written as parenthesized function expressions
// (`const send = (function send(...) {...})`, `text: ((value) => {...})`), which V8 compiles
// while the isolate is prepared instead of lazily on the first exec.
const __codemode_host__ = (function (setup) {
  "use strict";
  const g = globalThis;
  const ping = g.__codemode_ping__;
  delete g.__codemode_ping__;

  // ---- primordials --------------------------------------------------------------------------
  // Every built-in the prelude calls once the script runs, taken now, before any script exists
  // (as Node.js does with its primordials): the script may replace any global, prototype method,
  // accessor or Symbol.iterator, and none of that may change what the prelude writes to the
  // host or let it skip a check. So the code below calls methods only through these uncurried
  // copies (`StringPrototypeSlice(s, 0, 5)`, never `s.slice(0, 5)`), never iterates with
  // for-of, spread or array destructuring (the iterator protocol), reads a value it checks once,
  // gives objects and arrays it writes into a null prototype (no inherited setter or toJSON
  // applies to them), and attaches promise reactions with `settle` (no species lookup).
  // tests/hardening/test_forgery.py replaces each one listed here and checks nothing changes.
  const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
  const ReflectApply = Reflect.apply;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectEntries = Object.entries;
  const ObjectKeys = Object.keys;
  const ObjectFreeze = Object.freeze;
  const ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ArrayIsArray = Array.isArray;
  const JSONStringify = JSON.stringify;
  const JSONParse = JSON.parse;
  const StringCtor = String;
  const StringPrototypeCharCodeAt = uncurryThis(String.prototype.charCodeAt);
  const StringPrototypeIndexOf = uncurryThis(String.prototype.indexOf);
  const StringPrototypeSlice = uncurryThis(String.prototype.slice);
  const StringPrototypeStartsWith = uncurryThis(String.prototype.startsWith);
  const StringPrototypeToLowerCase = uncurryThis(String.prototype.toLowerCase);
  const StringPrototypeTrim = uncurryThis(String.prototype.trim);
  const SymbolPrototypeToString = uncurryThis(Symbol.prototype.toString);
  const ErrorPrototypeToString = uncurryThis(Error.prototype.toString);
  const MapCtor = Map;
  const MapPrototypeGet = uncurryThis(Map.prototype.get);
  const MapPrototypeSet = uncurryThis(Map.prototype.set);
  const MapPrototypeDelete = uncurryThis(Map.prototype.delete);
  const MapPrototypeForEach = uncurryThis(Map.prototype.forEach);
  const PromiseCtor = Promise;
  const PromiseResolve = Promise.resolve;
  const PromiseReject = Promise.reject;
  const PromisePrototypeThen = uncurryThis(Promise.prototype.then);
  const ProxyCtor = Proxy;
  const NumberIsFinite = Number.isFinite;
  const MathTrunc = Math.trunc;
  const MathImul = Math.imul;
  const MathObject = Math;
  const ReflectConstruct = Reflect.construct;
  const DateCtor = Date;
  const DateNow = Date.now;
  const MathRandom = Math.random;
  const DateParse = Date.parse;
  const DateUTC = Date.UTC;
  const DatePrototypeToString = uncurryThis(Date.prototype.toString);
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const WeakMapCtor = WeakMap;
  const WeakMapPrototypeGet = uncurryThis(WeakMap.prototype.get);
  const WeakMapPrototypeSet = uncurryThis(WeakMap.prototype.set);
  const IntlObject = g.Intl;
  const Int32ArrayCtor = Int32Array;
  const SAB = g.SharedArrayBuffer;
  const AtomicsLoad = g.Atomics.load;
  const AtomicsStore = g.Atomics.store;
  const AtomicsExchange = g.Atomics.exchange;
  const AtomicsWaitAsync = g.Atomics.waitAsync;
  // ---- end of primordials --------------------------------------------------------------------

  // An array no setter, getter or toJSON of Array.prototype or Object.prototype reaches.
  const safeList = () => ObjectSetPrototypeOf([], null);
  const append = (list, value) => {
    list[list.length] = value;
  };
  // A data property descriptor no accessor of Object.prototype ("get", "value"...) alters.
  const dataProperty = (value, enumerable) => ({ __proto__: null, value, writable: true, configurable: true, enumerable });

  // `promise.then(onFulfilled, onRejected)` on a promise the script cannot reach, without the
  // species lookup of `then` (Promise.prototype.constructor, Symbol.species) that runs its code.
  function settle(promise, onFulfilled, onRejected) {
    ObjectDefineProperty(promise, "constructor", { __proto__: null, value: undefined });
    PromisePrototypeThen(promise, onFulfilled, onRejected);
  }

  for (const name of ["console", "Atomics", "SharedArrayBuffer", "WebAssembly"]) {
    delete g[name];
  }
  const builtinGlobals = Object.getOwnPropertyNames(g);

  // Stack traces show only the script's frames: the prelude's frames (and the native calls it
  // made) and the wrapper's call into the script are left out, in V8's default format.
  // Columns on the script's first line still include the wrapper prefix; the host shifts them
  // in the error text it reports (the engine cell's `_fix_positions`).
  const PRELUDE_FILE = "codemode_prelude.js";
  function prepareStackTrace(error, frames) {
    let out;
    try {
      out = ErrorPrototypeToString(error);
    } catch (_) {
      out = "Error";
    }
    const fileOf = (frame) => frame.getScriptNameOrSourceURL(); // the sourceURL, as printed
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i];
      if (fileOf(frame) === PRELUDE_FILE) {
        if (frame.getFunctionName() === "run") break; // below it: the wrapper's call
        continue;
      }
      const caller = frames[i + 1];
      if (fileOf(frame) == null && caller !== undefined && fileOf(caller) === PRELUDE_FILE) {
        continue; // a built-in the prelude called (JSON.stringify for text(), ...)
      }
      out += "\n    at " + frame;
    }
    return out;
  }
  ObjectDefineProperty(g.Error, "prepareStackTrace", dataProperty(prepareStackTrace, false));

  // ---- channel -------------------------------------------------------------------------------
  // Every message is a null-prototype object of primitives (and, for `done`, one null-prototype
  // object of strings), so its JSON text is exactly what the prelude built.
  const CAP = setup.ring_bytes; // a power of two
  const MAX_BUFFERED_CHARS = setup.max_buffered_chars;
  const ring = new SAB(16 + CAP);
  const header = new Int32Array(ring, 0, 4); // [write pos, read pos (host), overflow count, ping pending]
  const units = new Uint16Array(ring, 16, CAP >> 1);
  const words = new Uint32Array(ring, 16, CAP >> 2);
  const overflow = safeList();
  let overflowHead = 0; // messages before it were drained already
  let overflowChars = 0;
  const DRAIN_CHARS = CAP >> 1; // one drain hands the host at most about this much
  let finished = false;

  // Output items dropped because too much waited in the overflow (a script printing faster than
  // the host takes it, without pausing), not yet reported: the report, `{k: "dropped"}`, goes
  // before the next message kept, or ends the drain that empties the overflow.
  let droppedItems = 0;
  let droppedChars = 0;

  // Journal entries recorded since the last message (only with a determinism); they go to the
  // host as one `{k: "journal"}` message ahead of the next other message.
  let journal = safeList();

  function putJournal() {
    const entries = journal;
    journal = safeList();
    put(JSONStringify({ __proto__: null, k: "journal", v: entries }));
  }

  // The characters of an output message's item, as the host counts them; -1 for other kinds.
  function outputChars(message) {
    const k = message.k;
    if (k === "text") return message.v.length;
    if (k === "image" || k === "audio") return message.url.length;
    return -1;
  }

  function droppedReport() {
    const s = JSONStringify({ __proto__: null, k: "dropped", items: droppedItems, chars: droppedChars });
    droppedItems = 0;
    droppedChars = 0;
    return s;
  }

  // Output that would take the overflow past MAX_BUFFERED_CHARS is dropped (and reported), and
  // the script runs on; other messages always go (calls must be answered, `done` must arrive;
  // the heap limit bounds them).
  const send = (function send(message) {
    if (journal.length !== 0) putJournal(); // pinged with the message: one wake-up for both
    const s = JSONStringify(message);
    const n = s.length;
    const need = 4 + ((n * 2 + 3) & ~3);
    const used = (AtomicsLoad(header, 0) - AtomicsLoad(header, 1)) >>> 0;
    const queued = overflow.length > overflowHead || need > CAP - used;
    if (queued && overflowChars + n > MAX_BUFFERED_CHARS) {
      const chars = outputChars(message);
      if (chars >= 0) {
        droppedItems++;
        droppedChars += chars;
        return;
      }
    }
    if (droppedItems !== 0) put(droppedReport());
    write(s);
  });

  // One message's JSON text into the ring, or into the overflow when the ring has no room (or
  // older messages wait there); the host is pinged unless a ping is still pending.
  const write = (function write(s) {
    put(s);
    if (AtomicsExchange(header, 3, 1) === 0) ping();
  });

  // The same without the ping, for a message that goes just ahead of another: the host wakes
  // once, for both.
  const put = (function put(s) {
    const n = s.length;
    const need = 4 + ((n * 2 + 3) & ~3);
    const w = AtomicsLoad(header, 0) >>> 0;
    const r = AtomicsLoad(header, 1) >>> 0;
    if (overflow.length > overflowHead || need > CAP - ((w - r) >>> 0)) {
      append(overflow, s);
      overflowChars += n;
      AtomicsStore(header, 2, overflow.length - overflowHead);
    } else {
      let p = w & (CAP - 1);
      words[p >> 2] = n;
      p = (p + 4) & (CAP - 1);
      let u = p >> 1;
      const limit = CAP >> 1;
      for (let i = 0; i < n; i++) {
        units[u++] = StringPrototypeCharCodeAt(s, i);
        if (u === limit) u = 0;
      }
      AtomicsStore(header, 0, (w + need) | 0);
    }
  });

  // ---- value helpers -------------------------------------------------------------------------
  const EXIT = ObjectFreeze({ __proto__: null, codemodeExit: true });

  // In a catch around code that may run the script's own functions: `exit()` passes through.
  function passExit(e) {
    if (e === EXIT) throw e;
  }

  function errorText(e) {
    if (e !== null && (typeof e === "object" || typeof e === "function")) {
      try {
        const stack = e.stack;
        if (typeof stack === "string") return stack;
      } catch (x) {
        passExit(x);
      }
    }
    try {
      return StringCtor(e);
    } catch (x) {
      passExit(x);
      return "[unprintable value]";
    }
  }

  // What a helper throws for a caught value: its text, or the exit signal itself.
  function messageOf(e) {
    passExit(e);
    return typeof e === "string" ? e : errorText(e);
  }

  const toText = (function toText(v) {
    const t = typeof v;
    if (v === undefined || v === null || t === "boolean" || t === "number" || t === "bigint" || t === "string") {
      return StringCtor(v);
    }
    if (t === "symbol") return SymbolPrototypeToString(v);
    let s;
    try {
      s = JSONStringify(v);
    } catch (e) {
      throw messageOf(e);
    }
    return s === undefined ? StringCtor(v) : s;
  });

  function plainJson(v, failure) {
    let s;
    try {
      s = JSONStringify(v);
    } catch (e) {
      passExit(e);
      throw failure;
    }
    if (s === undefined) throw failure;
    return JSONParse(s);
  }

  const IMAGE_GENERIC =
    "image expects a non-empty image URL string, an object with image_url and optional detail, or a raw MCP image block";
  const IMAGE_INVALID = "Tool call failed: invalid image output. Pass a base64 data URI instead";
  const IMAGE_REMOTE =
    "Tool call failed: remote image URLs are not supported in tool outputs. Pass a base64 data URI instead";
  const DETAIL_NOT_STRING = "image detail must be a string when provided";
  const AUDIO_GENERIC =
    "audio expects a non-empty audio URL string, an object with audio_url, or a raw MCP audio block";
  const AUDIO_INVALID = "Tool call failed: invalid audio output. Pass a base64 data URI instead";
  const FORWARD_GENERIC =
    "forward_output expects a direct tool output with `content` or `content_items`, a text/image content item, an image_url object, or a string output";

  const isDetail = (d) => d === "auto" || d === "low" || d === "high" || d === "original";
  const isDataUrl = (url) => StringPrototypeToLowerCase(StringPrototypeSlice(url, 0, 5)) === "data:";

  // The data URL of an MCP block whose `data` (a non-empty string) was read already.
  function blockUrl(block, data) {
    if (isDataUrl(data)) return data;
    const mimeType = block.mimeType;
    const mime_type = block.mime_type;
    const mime =
      typeof mimeType === "string" && mimeType !== "" ? mimeType
      : typeof mime_type === "string" && mime_type !== "" ? mime_type
      : "application/octet-stream";
    return `data:${mime};base64,${data}`;
  }

  function metaDetail(block, caseInsensitive) {
    const meta = block._meta;
    if (meta === null || typeof meta !== "object") return undefined;
    let d = meta["codex/imageDetail"];
    if (typeof d !== "string") return undefined;
    if (caseInsensitive) d = StringPrototypeToLowerCase(d);
    return isDetail(d) ? d : undefined;
  }

  function checkImageUrl(url) {
    if (url === "") throw IMAGE_GENERIC;
    const colon = StringPrototypeIndexOf(url, ":");
    if (colon < 0) throw IMAGE_INVALID;
    const scheme = StringPrototypeToLowerCase(StringPrototypeSlice(url, 0, colon));
    if (scheme === "http" || scheme === "https") throw IMAGE_REMOTE;
    if (scheme !== "data") throw IMAGE_INVALID;
  }

  // `url` and `detail` (if given) are strings here.
  function imageItem(url, detail) {
    checkImageUrl(url);
    const d = detail === undefined ? "high" : StringPrototypeToLowerCase(detail);
    if (!isDetail(d)) throw "image detail must be one of: auto, low, high, original";
    return { __proto__: null, k: "image", url, detail: d };
  }

  function mcpImageItem(value) {
    const block = plainJson(value, IMAGE_GENERIC);
    if (block === null || typeof block !== "object" || ArrayIsArray(block)) throw IMAGE_GENERIC;
    const type = block.type;
    if (typeof type !== "string") throw IMAGE_GENERIC;
    if (type !== "image") throw `image only accepts MCP image blocks, got ${JSONStringify(type)}`;
    const data = block.data;
    if (typeof data !== "string" || data === "") throw "image expected MCP image data";
    return imageItem(blockUrl(block, data), metaDetail(block, false));
  }

  function audioItem(value) {
    let url;
    if (typeof value === "string") {
      url = value;
    } else if (value !== null && typeof value === "object" && !ArrayIsArray(value)) {
      const audioUrl = value.audio_url;
      if (audioUrl !== undefined) {
        if (typeof audioUrl !== "string") throw AUDIO_GENERIC;
        url = audioUrl;
      } else {
        const block = plainJson(value, AUDIO_GENERIC);
        if (block === null || typeof block !== "object") throw AUDIO_GENERIC;
        const type = block.type;
        if (typeof type !== "string") throw AUDIO_GENERIC;
        if (type !== "audio") throw `audio only accepts MCP audio blocks, got ${JSONStringify(type)}`;
        const data = block.data;
        if (typeof data !== "string" || data === "") throw "audio expected MCP audio data";
        url = blockUrl(block, data);
      }
    } else {
      throw AUDIO_GENERIC;
    }
    if (url === "") throw AUDIO_GENERIC;
    if (!isDataUrl(url)) throw AUDIO_INVALID;
    return { __proto__: null, k: "audio", url };
  }

  function forwardEntry(entry) {
    if (entry === null || typeof entry !== "object" || ArrayIsArray(entry)) {
      throw "forward_output expected content entries to be text/image objects";
    }
    const rawType = entry.type;
    const type = typeof rawType === "string" ? rawType : undefined;
    if (type === "text" || type === "input_text" || type === "inputText") {
      const text = entry.text;
      if (typeof text !== "string") throw `output expected \`${type}\` content to include \`text\``;
      return { __proto__: null, k: "text", v: text };
    }
    if (type === "image") {
      const data = entry.data;
      if (typeof data !== "string") throw "output expected `image` content to include `data`";
      if (data === "") throw "output expected MCP image data";
      return imageItem(blockUrl(entry, data), metaDetail(entry, true));
    }
    if (type === "audio") return audioItem(entry);
    if (type === "input_image" || type === "inputImage" || (type === undefined && ("image_url" in entry || "imageUrl" in entry))) {
      const url = "image_url" in entry ? entry.image_url : entry.imageUrl;
      if (url === undefined) throw "output expected image content to include `image_url`";
      if (typeof url !== "string") throw "output expected `image_url` to be a string";
      const detail = entry.detail;
      if (detail !== undefined && detail !== null && typeof detail !== "string") throw DETAIL_NOT_STRING;
      return imageItem(url, detail ?? undefined);
    }
    if (type === undefined) throw FORWARD_GENERIC;
    throw `forward_output only supports text and image content blocks, got \`${type}\``;
  }

  function forwardEntries(items, entries, notArray) {
    if (!ArrayIsArray(entries)) throw notArray;
    const count = entries.length;
    for (let i = 0; i < count; i++) append(items, forwardEntry(entries[i]));
  }

  function normalizedImage(value, override) {
    if (typeof value === "string") return imageItem(value, override);
    if (value !== null && typeof value === "object" && !ArrayIsArray(value)) {
      const imageUrl = value.image_url;
      if (imageUrl !== undefined) {
        if (typeof imageUrl !== "string") throw IMAGE_GENERIC;
        const embedded = value.detail;
        if (embedded !== undefined && embedded !== null && typeof embedded !== "string") throw DETAIL_NOT_STRING;
        return imageItem(imageUrl, override ?? embedded ?? undefined);
      }
      const block = mcpImageItem(value);
      return override === undefined ? block : imageItem(block.url, override);
    }
    throw IMAGE_GENERIC;
  }

  // ---- per-cell state ------------------------------------------------------------------------
  let storedJson = "{}"; // from the host: key -> JSON text of the value, parsed on first use
  let stored = null;
  let storeBudget = 0; // key + JSON characters this cell may add to the stored values
  let storeLimitError = "";
  const writes = new MapCtor();
  const pendingCalls = new MapCtor();
  let nextCallId = 0;
  const timers = new MapCtor(); // id -> { callback, ms }: registered, not yet fired or cleared
  let nextTimerId = 0;

  function storedValues() {
    if (stored === null) {
      stored = new MapCtor();
      const entries = ObjectEntries(JSONParse(storedJson));
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i];
        MapPrototypeSet(stored, entry[0], entry[1]);
      }
    }
    return stored;
  }

  const SUCCESS = ObjectFreeze({ __proto__: null, codemodeSuccess: true });

  // ---- determinism ---------------------------------------------------------------------------
  // Set by `run` when the host gives a determinism; without one none of this is installed and
  // Date and Math.random are the originals.
  let recording = false; // inputs applied live are journaled
  let replaying = false; // timers wait for the host's `fire` until `live`
  let clock = null; // recorded clock readings handed out first (replay): [ms, times] pairs
  let clockNext = 0; // the pair handed out now
  let clockTaken = 0; // times it was handed out

  const entry = (kind, value) => {
    const e = safeList();
    e[0] = kind;
    e[1] = value;
    return e;
  };

  // What every reading of the clock by the script returns: the recorded readings first, then
  // the real clock, recorded as `["d", ms, times]` (a busy loop reads the same ms many times).
  const readClock = (function readClock() {
    if (!recording) return DateNow();
    if (clock !== null) {
      let reading = clock[clockNext];
      if (clockTaken === reading[1]) {
        clockNext++;
        clockTaken = 0;
        reading = clockNext < clock.length ? clock[clockNext] : undefined;
      }
      if (reading !== undefined) {
        clockTaken++;
        return reading[0];
      }
      clock = null;
    }
    const ms = DateNow();
    const last = journal.length === 0 ? undefined : journal[journal.length - 1];
    if (last !== undefined && last[0] === "d" && last[1] === ms) {
      last[2]++;
    } else {
      const reading = entry("d", ms);
      reading[2] = 1;
      append(journal, reading);
    }
    return ms;
  });

  // xoshiro128** (Blackman and Vigna), its state filled by splitmix32 from the 53-bit seed.
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const seedRandom = (function seedRandom(seed) {
    let x = seed >>> 0;
    const high = MathTrunc(seed / 4294967296) | 0;
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x ^ (x >>> 16);
      z = MathImul(z, 0x21f0aaad);
      z ^= z >>> 15;
      z = MathImul(z, 0x735a2d97);
      return z ^ (z >>> 15);
    };
    s0 = next();
    x ^= high;
    s1 = next();
    s2 = next();
    s3 = next();
    if ((s0 | s1 | s2 | s3) === 0) s0 = 1; // the one state xoshiro never leaves
  });
  const nextRandom = (function nextRandom() {
    const r = MathImul(s1, 5);
    const result = MathImul((r << 7) | (r >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    return result >>> 0;
  });
  // Method definitions: named like the originals, not constructors, length 0.
  const replacements = {
    __proto__: null,
    random() {
      if (!recording) return MathRandom();
      return ((nextRandom() >>> 5) * 67108864 + (nextRandom() >>> 6)) / 9007199254740992;
    },
    now() {
      return readClock();
    },
  };

  // A Date whose no-argument forms and `now` read `readClock`; everything else is the original
  // Date's (its prototype, statics, `new Date(x)`, subclassing, `instanceof Date`).
  const installDate = (function installDate() {
    const DatePrototype = DateCtor.prototype;
    // (Seven parameters: the original's length.)
    const Date = function Date(year, month, day, hours, minutes, seconds, ms) {
      if (new.target === undefined) return DatePrototypeToString(ReflectConstruct(DateCtor, [readClock()], DateCtor));
      return ReflectConstruct(DateCtor, arguments.length === 0 ? [readClock()] : arguments, new.target);
    };
    ObjectDefineProperty(Date, "prototype", { __proto__: null, value: DatePrototype, writable: false });
    ObjectDefineProperty(Date, "now", dataProperty(replacements.now, false));
    ObjectDefineProperty(Date, "parse", dataProperty(DateParse, false));
    ObjectDefineProperty(Date, "UTC", dataProperty(DateUTC, false));
    ObjectDefineProperty(DatePrototype, "constructor", dataProperty(Date, false));
    ObjectDefineProperty(g, "Date", dataProperty(Date, false));
  });

  // Temporal.Now reads the clock through `readClock` too (at its precision here: milliseconds).
  // Read only for a script that names Temporal (`temporal` in the determinism): merely reading
  // the global makes V8 build the whole Temporal namespace, about as much as a warm exec costs.
  const installTemporalNow = (function installTemporalNow() {
    const TemporalObject = g.Temporal;
    if (TemporalObject === undefined) return;
    const Now = TemporalObject.Now;
    const Instant = TemporalObject.Instant;
    const fromEpochMilliseconds = Instant.fromEpochMilliseconds;
    const timeZoneId = Now.timeZoneId;
    const toZoned = uncurryThis(Instant.prototype.toZonedDateTimeISO);
    const zonedPrototype = TemporalObject.ZonedDateTime.prototype;
    const toPlainDateTime = uncurryThis(zonedPrototype.toPlainDateTime);
    const toPlainDate = uncurryThis(zonedPrototype.toPlainDate);
    const toPlainTime = uncurryThis(zonedPrototype.toPlainTime);
    const instant = () => ReflectApply(fromEpochMilliseconds, Instant, [readClock()]);
    const zoned = (zone) => toZoned(instant(), zone === undefined ? ReflectApply(timeZoneId, Now, []) : zone);
    // (Rest parameters: the originals' length, 0.)
    const methods = {
      __proto__: null,
      instant() {
        return instant();
      },
      zonedDateTimeISO(...zone) {
        return zoned(zone[0]);
      },
      plainDateTimeISO(...zone) {
        return toPlainDateTime(zoned(zone[0]));
      },
      plainDateISO(...zone) {
        return toPlainDate(zoned(zone[0]));
      },
      plainTimeISO(...zone) {
        return toPlainTime(zoned(zone[0]));
      },
    };
    const names = ObjectKeys(methods);
    for (let i = 0; i < names.length; i++) ObjectDefineProperty(Now, names[i], dataProperty(methods[names[i]], false));
  });

  // Intl.DateTimeFormat's format (and formatToParts) of no date formats `readClock()`.
  const installDateTimeFormat = (function installDateTimeFormat() {
    if (IntlObject === undefined) return;
    const prototype = IntlObject.DateTimeFormat.prototype;
    const formatGetter = ObjectGetOwnPropertyDescriptor(prototype, "format").get;
    const formatToParts = prototype.formatToParts;
    const formats = new WeakMapCtor(); // each formatter's format function, made once as the original's
    const members = {
      get format() {
        let format = WeakMapPrototypeGet(formats, this);
        if (format === undefined) {
          const original = ReflectApply(formatGetter, this, []); // a TypeError for a non-formatter
          format = (date) => original(date === undefined ? readClock() : date);
          ObjectDefineProperty(format, "name", { __proto__: null, value: "" });
          WeakMapPrototypeSet(formats, this, format);
        }
        return format;
      },
      formatToParts(date) {
        return ReflectApply(formatToParts, this, [date === undefined ? readClock() : date]);
      },
    };
    const getter = ObjectGetOwnPropertyDescriptor(members, "format").get;
    ObjectDefineProperty(prototype, "format", { __proto__: null, get: getter, set: undefined, enumerable: false, configurable: true });
    ObjectDefineProperty(prototype, "formatToParts", dataProperty(members.formatToParts, false));
  });

  // `determinism` (from the host, read before the script exists): { seed, clock, replaying,
  // temporal }.
  const startDeterminism = (function startDeterminism(determinism) {
    recording = true;
    replaying = determinism.replaying === true;
    const readings = determinism.clock; // [[ms, times], ...], each times > 0
    if (readings.length > 0) {
      clock = safeList();
      for (let i = 0; i < readings.length; i++) {
        const reading = entry(readings[i][0], readings[i][1]);
        append(clock, reading);
      }
    }
    seedRandom(determinism.seed);
    if (determinism.temporal === true) installTemporalNow();
  });
  // Installed once, while the isolate is prepared (each costs more than a whole warm exec's
  // share of V8 time if done per cell); without a determinism they read the originals.
  ObjectDefineProperty(MathObject, "random", dataProperty(replacements.random, false));
  installDate();
  installDateTimeFormat();

  // Runs a registered timer's callback once (the caller has unregistered it).
  const runTimer = (function runTimer(callback) {
    try {
      ReflectApply(callback, undefined, []);
    } catch (e) {
      finish(e);
    }
  });

  // Fires timer `id` after `ms` unless it is cleared first; a live fire is journaled.
  const armTimer = (function armTimer(id, ms) {
    const cell = new Int32ArrayCtor(new SAB(4));
    settle(AtomicsWaitAsync(cell, 0, 0, ms > 0 ? ms : 1).value, () => {
      const timer = MapPrototypeGet(timers, id);
      if (timer === undefined || finished) return;
      MapPrototypeDelete(timers, id);
      if (recording) append(journal, entry("t", id));
      runTimer(timer.callback);
    });
  });

  // `finish(SUCCESS)` or `finish(thrownValue)`: any thrown value but the exit sentinel is a
  // failure, `undefined` included (`throw undefined` fails with "undefined").
  const finish = (function finish(outcome) {
    if (finished) return;
    finished = true;
    let error = null;
    if (outcome !== SUCCESS && outcome !== EXIT) {
      try {
        error = errorText(outcome);
      } catch (_) {
        error = null; // exit() while the error was being described: the script exited
      }
    }
    const written = { __proto__: null };
    MapPrototypeForEach(writes, (text, key) => {
      written[key] = text;
    });
    send({ __proto__: null, k: "done", error, writes: written });
  });

  const callTool = (function callTool(name, hasArgument, argument) {
    let args = null;
    if (hasArgument) {
      let s;
      try {
        s = JSONStringify(argument);
      } catch (e) {
        throw messageOf(e);
      }
      if (s !== undefined) args = s;
    }
    const id = ++nextCallId;
    return new PromiseCtor(((resolve, reject) => {
      MapPrototypeSet(pendingCalls, id, { __proto__: null, resolve, reject });
      send({ __proto__: null, k: "call", id, name, args });
    }));
  });

  // ---- globals -------------------------------------------------------------------------------
  const helpers = {
    text: ((value) => {
      send({ __proto__: null, k: "text", v: toText(value) });
    }),
    image(value, detail) {
      let override;
      if (detail !== undefined && detail !== null) {
        if (typeof detail !== "string") throw DETAIL_NOT_STRING;
        override = detail;
      }
      send(normalizedImage(value, override));
    },
    audio(value) {
      send(audioItem(value));
    },
    generatedImage(result) {
      if (result === null || (typeof result !== "object" && typeof result !== "function")) {
        throw "generatedImage expects an image generation result object";
      }
      const hint = result.output_hint;
      if (hint !== undefined && typeof hint !== "string") {
        throw "generatedImage output_hint must be a string when provided";
      }
      const item = normalizedImage(result, undefined);
      send(item);
      if (hint !== undefined) send({ __proto__: null, k: "text", v: hint });
    },
    forward_output(...values) {
      const items = safeList();
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (typeof value === "string") {
          append(items, { __proto__: null, k: "text", v: value });
          continue;
        }
        const output = plainJson(value, FORWARD_GENERIC);
        if (output === null || typeof output !== "object" || ArrayIsArray(output)) throw FORWARD_GENERIC;
        if ("content" in output) {
          forwardEntries(items, output.content, "output expected `content` to be an array");
        } else if ("content_items" in output || "contentItems" in output) {
          const entries = "content_items" in output ? output.content_items : output.contentItems;
          forwardEntries(items, entries, "output expected `content_items` to be an array");
        } else if (typeof output.type === "string" || "image_url" in output || "imageUrl" in output) {
          append(items, forwardEntry(output));
        } else {
          const text = output.output;
          if (typeof text !== "string") throw FORWARD_GENERIC;
          append(items, { __proto__: null, k: "text", v: text });
        }
      }
      for (let i = 0; i < items.length; i++) send(items[i]);
    },
    notify(value) {
      const s = toText(value);
      if (StringPrototypeTrim(s) === "") throw "notify expects non-empty text";
      send({ __proto__: null, k: "notify", v: s });
    },
    store: ((key, value) => {
      let k;
      try {
        k = StringCtor(key);
      } catch (e) {
        passExit(e);
        throw "store key must be a string";
      }
      let s;
      try {
        s = JSONStringify(value);
      } catch (e) {
        throw messageOf(e);
      }
      if (s === undefined) throw `Unable to store ${JSONStringify(k)}. Only plain serializable objects can be stored.`;
      const values = storedValues();
      const previous = MapPrototypeGet(values, k);
      const growth = s.length - (previous === undefined ? -k.length : previous.length);
      if (growth > storeBudget) throw storeLimitError;
      storeBudget -= growth;
      MapPrototypeSet(values, k, s);
      MapPrototypeSet(writes, k, s);
    }),
    load: ((key) => {
      let k;
      try {
        k = StringCtor(key);
      } catch (e) {
        passExit(e);
        throw "load key must be a string";
      }
      const s = MapPrototypeGet(storedValues(), k);
      return s === undefined ? undefined : JSONParse(s);
    }),
    exit() {
      throw EXIT;
    },
    yield_control() {
      send({ __proto__: null, k: "yield" });
    },
    setTimeout(callback, delay) {
      if (typeof callback !== "function") throw "setTimeout expects a function callback";
      let ms = +delay; // ToNumber: a BigInt or Symbol throws, as in the reference
      ms = !NumberIsFinite(ms) || ms <= 0 ? 0 : MathTrunc(ms);
      const id = ++nextTimerId;
      MapPrototypeSet(timers, id, { __proto__: null, callback, ms });
      if (!replaying) armTimer(id, ms);
      return id;
    },
    clearTimeout(id) {
      if (id === undefined || id === null) return undefined;
      let n;
      try {
        n = +id; // ToNumber, not Number(): Number(1n) would not throw
      } catch (e) {
        passExit(e);
        throw "clearTimeout expects a numeric timeout id";
      }
      if (!NumberIsFinite(n) || n <= 0) return undefined;
      MapPrototypeDelete(timers, MathTrunc(n));
      return undefined;
    },
  };
  for (const name of Object.keys(helpers)) {
    ObjectDefineProperty(g, name, dataProperty(helpers[name], false));
  }
  const codeModeModule = { __proto__: null };
  for (const name of setup.module_exports) codeModeModule[name] = helpers[name];
  ObjectFreeze(codeModeModule);

  // The session's tools, installed by `run` (the script cannot have run before). What a fresh
  // isolate compiles costs every exec, so the tool names arrive as one JSON text that becomes
  // `tools` when the script first reads it, and ALL_TOOLS' entries as JSON text parsed on first
  // read, sent only to a script that names ALL_TOOLS or imports a module (null otherwise).
  // Bindings named HELPER_PREFIX + name are host helpers, not tools (the host sends them only
  // when its catalog is too large to declare): each becomes the global `name`, whose call
  // sends its arguments as one array; they are the first entries, taken off ALL_TOOLS. With
  // them, `tools` also answers unknown names with a function, so a call to a misspelt tool
  // rejects with the host's suggestions instead of throwing "is not a function".
  const HELPER_PREFIX = "codemode:";
  const ALL_TOOLS_NOT_SENT = "ALL_TOOLS is loaded only for a script that names it: write ALL_TOOLS in the script";
  let tools = null;
  let toolNamesJson = "[]";
  let allToolsJson = null;
  let allTools = null;
  let helperCount = 0;
  const toolsValue = (function toolsValue() {
    if (tools === null) {
      const names = JSONParse(toolNamesJson);
      let made = {};
      for (let i = 0; i < names.length; i++) made[names[i]] = toolFunction(names[i]);
      tools = helperCount > 0 ? unknownNames(made) : made;
    }
    return tools;
  });
  const allToolsValue = (function allToolsValue() {
    if (allTools === null) {
      if (allToolsJson === null) throw ALL_TOOLS_NOT_SENT;
      const entries = JSONParse(allToolsJson);
      if (helperCount > 0) {
        allTools = [];
        for (let i = helperCount; i < entries.length; i++) {
          ObjectDefineProperty(allTools, i - helperCount, dataProperty(entries[i], true));
        }
      } else {
        allTools = entries;
      }
    }
    return allTools;
  });
  const toolFunction = (function toolFunction(name) {
    return (function (argument) {
      return callTool(name, arguments.length > 0, argument);
    });
  });
  function hostHelper(binding) {
    return function (...values) {
      return callTool(binding, true, ObjectSetPrototypeOf(values, null));
    };
  }
  function unknownNames(target) {
    return new ProxyCtor(target, {
      __proto__: null,
      get(object, key) {
        if (typeof key !== "string" || key in object || key === "then" || key === "toJSON") return object[key];
        return toolFunction(key);
      },
    });
  }
  const installTools = (function installTools(helperNames, namesJson, entriesJson) {
    helperCount = helperNames.length;
    for (let i = 0; i < helperNames.length; i++) {
      const name = helperNames[i];
      const helperName = StringPrototypeSlice(name, HELPER_PREFIX.length);
      ObjectDefineProperty(g, helperName, dataProperty(hostHelper(name), false));
    }
    toolNamesJson = namesJson;
    allToolsJson = entriesJson;
    ObjectDefineProperty(g, "tools", {
      __proto__: null,
      get: () => {
        const value = toolsValue();
        ObjectDefineProperty(g, "tools", dataProperty(value, false));
        return value;
      },
      set: (value) => ObjectDefineProperty(g, "tools", dataProperty(value, false)),
      configurable: true,
      enumerable: false,
    });
    ObjectDefineProperty(g, "ALL_TOOLS", {
      __proto__: null,
      get: allToolsValue,
      set: (value) => ObjectDefineProperty(g, "ALL_TOOLS", dataProperty(value, false)),
      configurable: true,
      enumerable: false,
    });
  });

  // ---- modules -------------------------------------------------------------------------------
  function moduleFor(specifier) {
    if (specifier === "@openai/code_mode" || specifier === "openai/code_mode") return codeModeModule;
    if (specifier === "tools.js") {
      const value = toolsValue();
      return ObjectFreeze({ __proto__: null, ...value, ALL_TOOLS: allToolsValue(), default: value });
    }
    throw `Unsupported import in exec: ${specifier}`;
  }

  function dynamicImport(specifier) {
    try {
      return ReflectApply(PromiseResolve, PromiseCtor, [moduleFor(StringCtor(specifier))]);
    } catch (e) {
      return ReflectApply(PromiseReject, PromiseCtor, [messageOf(e)]);
    }
  }

  // ---- host interface ------------------------------------------------------------------------
  const host = ObjectFreeze({
    __proto__: null,
    ring,
    run: ((helperNames, toolNamesJson, allToolsEntries, snapshotJson, budget, limitError, determinism, main) => {
      installTools(helperNames, toolNamesJson, allToolsEntries);
      if (determinism !== null) startDeterminism(determinism);
      storedJson = snapshotJson;
      storeBudget = budget;
      storeLimitError = limitError;
      let promise;
      try {
        promise = ReflectApply(main, undefined, [moduleFor, dynamicImport]);
      } catch (e) {
        finish(e);
        return;
      }
      settle(promise, (() => finish(SUCCESS)), ((e) => finish(e)));
    }),
    // One step settling `[[id, ok, payload], ...]` (payload: JSON text when ok, else the error),
    // journaled as one batch of the calls it settled, in the order given.
    resolve: ((batch) => {
      const ids = safeList();
      for (let i = 0; i < batch.length; i++) {
        const result = batch[i];
        const id = result[0];
        const call = MapPrototypeGet(pendingCalls, id);
        if (call === undefined) continue;
        MapPrototypeDelete(pendingCalls, id);
        append(ids, id);
        if (result[1]) call.resolve(JSONParse(result[2]));
        else call.reject(result[2]);
      }
      if (recording && !replaying && ids.length !== 0) append(journal, entry("b", ids));
    }),
    // Replay: run timer `id`'s callback now, as its own step, if it is still registered.
    fire: ((id) => {
      const timer = MapPrototypeGet(timers, id);
      if (timer === undefined || finished) return;
      MapPrototypeDelete(timers, id);
      runTimer(timer.callback);
    }),
    // Replay is over: the timers still registered are armed with their full delay, and every
    // input from now on is journaled.
    live: (() => {
      if (!replaying) return;
      replaying = false;
      MapPrototypeForEach(timers, (timer, id) => armTimer(id, timer.ms));
    }),
    // The oldest overflow messages, about DRAIN_CHARS at most, as one JSON array text; the
    // host drains again while the count in the header is not 0.
    drain() {
      let batch = "";
      let chars = 0;
      while (overflowHead < overflow.length && (chars === 0 || chars + overflow[overflowHead].length <= DRAIN_CHARS)) {
        const s = overflow[overflowHead];
        overflow[overflowHead++] = undefined;
        batch = chars === 0 ? s : batch + "," + s;
        chars += s.length;
      }
      overflowChars -= chars;
      if (overflowHead === overflow.length) {
        overflow.length = 0;
        overflowHead = 0;
        if (droppedItems !== 0) batch = chars === 0 ? droppedReport() : batch + "," + droppedReport();
      }
      AtomicsStore(header, 2, overflow.length - overflowHead);
      return "[" + batch + "]";
    },
  });

  // ---- the helper table ----------------------------------------------------------------------
  // The host lists the globals this prelude installs and the module's exports (both from
  // codemode/_protocol/helpers.py, which also writes the model's description of them). A
  // difference is a codemode bug: the isolate refuses to start rather than run scripts with a
  // helper the model is not told about, or without one it is told about.
  const installed = Object.getOwnPropertyNames(g).filter((name) => !builtinGlobals.includes(name));
  const missing = setup.helpers.filter((name) => !installed.includes(name));
  const unlisted = installed.filter((name) => !setup.helpers.includes(name));
  const strayExports = setup.module_exports.filter((name) => !setup.helpers.includes(name));
  if (missing.length > 0 || unlisted.length > 0 || strayExports.length > 0) {
    throw new Error(
      "codemode prelude does not match the helper table (codemode/_protocol/helpers.py): " +
        `listed but not installed ${JSONStringify(missing)}, installed but not listed ${JSONStringify(unlisted)}, ` +
        `exported but not installed ${JSONStringify(strayExports)}`,
    );
  }
  return host;
})(__CODEMODE_SETUP__);
__codemode_host__.ring;
//# sourceURL=codemode_prelude.js
