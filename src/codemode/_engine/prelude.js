// codemode prelude: evaluated once in every fresh isolate before the script runs.
//
// It installs the model-facing globals (the helpers of codemode/_protocol/helpers.py, whose
// names the host passes in `setup.helpers`, then `tools` and `ALL_TOOLS` with each run), removes
// the ones the sandbox forbids, and opens the channel to the host:
//   * script -> host: JSON messages written into a SharedArrayBuffer ring that Python reads
//     directly, so output is never stuck inside an isolate that is busy in a loop; a ping
//     (one-way native callback) tells the host to look. Messages that do not fit wait in an
//     overflow queue the host drains with `drain()` when the isolate is idle.
//   * host -> script: short scripts calling `__codemode_host__` (run / resolve / drain), a
//     script-level const, not a property of globalThis; the host renames it to a random name per
//     process before evaluating this file, so the script can neither name nor find it (nor the
//     ring it holds).
// The isolate is generic until `run`: the session's tools, stored values and store budget come
// with the program, so one pool of prepared isolates serves every session.
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

  // Intrinsics captured before the script can replace them.
  const SAB = g.SharedArrayBuffer;
  const waitAsync = g.Atomics.waitAsync;
  const atomicsLoad = g.Atomics.load;
  const atomicsStore = g.Atomics.store;
  const atomicsExchange = g.Atomics.exchange;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const isArray = Array.isArray;
  const arrayPush = Array.prototype.push; // the script may replace the prototype's
  const arrayJoin = Array.prototype.join;
  const arraySlice = Array.prototype.slice;
  const startsWith = String.prototype.startsWith;
  const stringSlice = String.prototype.slice;
  const ProxyCtor = Proxy;
  const objectEntries = Object.entries;
  const push = (array, value) => reflectApply(arrayPush, array, [value]);
  const PromiseCtor = Promise;
  const promiseThen = Promise.prototype.then; // the script may replace the prototype's
  const Int32ArrayCtor = Int32Array;
  const MapCtor = Map;
  const StringCtor = String;
  const isFiniteNumber = Number.isFinite;
  const trunc = Math.trunc;
  const defineProperty = Object.defineProperty;
  const fromEntries = Object.fromEntries;
  const freeze = Object.freeze;
  const reflectApply = Reflect.apply;

  for (const name of ["console", "Atomics", "SharedArrayBuffer", "WebAssembly"]) {
    delete g[name];
  }
  const builtinGlobals = Object.getOwnPropertyNames(g);

  // Stack traces show only the script's frames: the prelude's frames (and the native calls it
  // made) and the wrapper's call into the script are left out, in V8's default format.
  // Columns on the script's first line still include the wrapper prefix; the host shifts them
  // in the error text it reports (the engine cell's `_fix_positions`).
  const PRELUDE_FILE = "codemode_prelude.js";
  const errorToString = Error.prototype.toString;
  function prepareStackTrace(error, frames) {
    let out;
    try {
      out = reflectApply(errorToString, error, []);
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
  defineProperty(g.Error, "prepareStackTrace", { value: prepareStackTrace, writable: true, configurable: true, enumerable: false });

  // ---- channel -------------------------------------------------------------------------------
  const CAP = setup.ring_bytes; // a power of two
  const ring = new SAB(16 + CAP);
  const header = new Int32Array(ring, 0, 4); // [write pos, read pos (host), overflow count, ping pending]
  const units = new Uint16Array(ring, 16, CAP >> 1);
  const words = new Uint32Array(ring, 16, CAP >> 2);
  const overflow = [];
  let overflowHead = 0; // messages before it were drained already
  let overflowChars = 0;
  const DRAIN_CHARS = CAP >> 1; // one drain hands the host at most about this much
  let finished = false;

  const send = (function send(message) {
    const s = stringify(message);
    const n = s.length;
    const need = 4 + ((n * 2 + 3) & ~3);
    const w = atomicsLoad(header, 0) >>> 0;
    const r = atomicsLoad(header, 1) >>> 0;
    if (overflow.length > overflowHead || need > CAP - ((w - r) >>> 0)) {
      if (overflowChars + n > setup.max_buffered_chars && message.k !== "done") {
        throw `output buffer limit reached: more than ${setup.max_buffered_chars} characters are waiting for the host`;
      }
      push(overflow, s);
      overflowChars += n;
      atomicsStore(header, 2, overflow.length - overflowHead);
    } else {
      let p = w & (CAP - 1);
      words[p >> 2] = n;
      p = (p + 4) & (CAP - 1);
      let u = p >> 1;
      const limit = CAP >> 1;
      for (let i = 0; i < n; i++) {
        units[u++] = s.charCodeAt(i);
        if (u === limit) u = 0;
      }
      atomicsStore(header, 0, (w + need) | 0);
    }
    if (atomicsExchange(header, 3, 1) === 0) ping();
  });

  // ---- value helpers -------------------------------------------------------------------------
  const EXIT = freeze({ codemodeExit: true });

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
    if (t === "symbol") return v.toString();
    let s;
    try {
      s = stringify(v);
    } catch (e) {
      throw messageOf(e);
    }
    return s === undefined ? StringCtor(v) : s;
  });

  function plainJson(v, failure) {
    let s;
    try {
      s = stringify(v);
    } catch (e) {
      passExit(e);
      throw failure;
    }
    if (s === undefined) throw failure;
    return parse(s);
  }

  const DETAILS = ["auto", "low", "high", "original"];
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

  function blockUrl(block) {
    if (/^data:/i.test(block.data)) return block.data;
    const mime =
      typeof block.mimeType === "string" && block.mimeType !== "" ? block.mimeType
      : typeof block.mime_type === "string" && block.mime_type !== "" ? block.mime_type
      : "application/octet-stream";
    return `data:${mime};base64,${block.data}`;
  }

  function metaDetail(block, caseInsensitive) {
    const meta = block._meta;
    if (meta === null || typeof meta !== "object") return undefined;
    let d = meta["codex/imageDetail"];
    if (typeof d !== "string") return undefined;
    if (caseInsensitive) d = d.toLowerCase();
    return DETAILS.includes(d) ? d : undefined;
  }

  function checkImageUrl(url) {
    if (url === "") throw IMAGE_GENERIC;
    const colon = url.indexOf(":");
    if (colon < 0) throw IMAGE_INVALID;
    const scheme = url.slice(0, colon).toLowerCase();
    if (scheme === "http" || scheme === "https") throw IMAGE_REMOTE;
    if (scheme !== "data") throw IMAGE_INVALID;
  }

  function imageItem(url, detail) {
    checkImageUrl(url);
    let d = detail === undefined ? "high" : detail.toLowerCase();
    if (!DETAILS.includes(d)) throw "image detail must be one of: auto, low, high, original";
    return { k: "image", url, detail: d };
  }

  function mcpImageItem(value) {
    const block = plainJson(value, IMAGE_GENERIC);
    if (block === null || typeof block !== "object" || isArray(block) || typeof block.type !== "string") {
      throw IMAGE_GENERIC;
    }
    if (block.type !== "image") throw `image only accepts MCP image blocks, got ${stringify(block.type)}`;
    if (typeof block.data !== "string" || block.data === "") throw "image expected MCP image data";
    return imageItem(blockUrl(block), metaDetail(block, false));
  }

  function audioItem(value) {
    let url;
    if (typeof value === "string") {
      url = value;
    } else if (value !== null && typeof value === "object" && !isArray(value)) {
      if (value.audio_url !== undefined) {
        if (typeof value.audio_url !== "string") throw AUDIO_GENERIC;
        url = value.audio_url;
      } else {
        const block = plainJson(value, AUDIO_GENERIC);
        if (block === null || typeof block !== "object" || typeof block.type !== "string") throw AUDIO_GENERIC;
        if (block.type !== "audio") throw `audio only accepts MCP audio blocks, got ${stringify(block.type)}`;
        if (typeof block.data !== "string" || block.data === "") throw "audio expected MCP audio data";
        url = blockUrl(block);
      }
    } else {
      throw AUDIO_GENERIC;
    }
    if (url === "") throw AUDIO_GENERIC;
    if (!/^data:/i.test(url)) throw AUDIO_INVALID;
    return { k: "audio", url };
  }

  function forwardEntry(entry) {
    if (entry === null || typeof entry !== "object" || isArray(entry)) {
      throw "forward_output expected content entries to be text/image objects";
    }
    const type = typeof entry.type === "string" ? entry.type : undefined;
    if (type === "text" || type === "input_text" || type === "inputText") {
      if (typeof entry.text !== "string") throw `output expected \`${type}\` content to include \`text\``;
      return { k: "text", v: entry.text };
    }
    if (type === "image") {
      if (typeof entry.data !== "string") throw "output expected `image` content to include `data`";
      if (entry.data === "") throw "output expected MCP image data";
      return imageItem(blockUrl(entry), metaDetail(entry, true));
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

  function normalizedImage(value, override) {
    if (typeof value === "string") return imageItem(value, override);
    if (value !== null && typeof value === "object" && !isArray(value)) {
      if (value.image_url !== undefined) {
        if (typeof value.image_url !== "string") throw IMAGE_GENERIC;
        const embedded = value.detail;
        if (embedded !== undefined && embedded !== null && typeof embedded !== "string") throw DETAIL_NOT_STRING;
        return imageItem(value.image_url, override ?? embedded ?? undefined);
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
  const timers = new MapCtor();
  let nextTimerId = 0;

  function storedValues() {
    if (stored === null) stored = new MapCtor(objectEntries(parse(storedJson)));
    return stored;
  }

  const SUCCESS = freeze({ codemodeSuccess: true });

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
    send({ k: "done", error, writes: fromEntries(writes) });
  });

  const callTool = (function callTool(name, hasArgument, argument) {
    let args = null;
    if (hasArgument) {
      let s;
      try {
        s = stringify(argument);
      } catch (e) {
        throw messageOf(e);
      }
      if (s !== undefined) args = s;
    }
    const id = ++nextCallId;
    return new PromiseCtor(((resolve, reject) => {
      pendingCalls.set(id, { resolve, reject });
      send({ k: "call", id, name, args });
    }));
  });

  // ---- globals -------------------------------------------------------------------------------
  const helpers = {
    text: ((value) => {
      send({ k: "text", v: toText(value) });
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
      if (hint !== undefined) send({ k: "text", v: hint });
    },
    forward_output(...values) {
      const items = [];
      for (const value of values) {
        if (typeof value === "string") {
          push(items, { k: "text", v: value });
          continue;
        }
        const output = plainJson(value, FORWARD_GENERIC);
        if (output === null || typeof output !== "object" || isArray(output)) throw FORWARD_GENERIC;
        if ("content" in output) {
          if (!isArray(output.content)) throw "output expected `content` to be an array";
          for (const entry of output.content) push(items, forwardEntry(entry));
        } else if ("content_items" in output || "contentItems" in output) {
          const key = "content_items" in output ? "content_items" : "contentItems";
          if (!isArray(output[key])) throw "output expected `content_items` to be an array";
          for (const entry of output[key]) push(items, forwardEntry(entry));
        } else if (typeof output.type === "string" || "image_url" in output || "imageUrl" in output) {
          push(items, forwardEntry(output));
        } else if (typeof output.output === "string") {
          push(items, { k: "text", v: output.output });
        } else {
          throw FORWARD_GENERIC;
        }
      }
      for (const item of items) send(item);
    },
    notify(value) {
      const s = toText(value);
      if (s.trim() === "") throw "notify expects non-empty text";
      send({ k: "notify", v: s });
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
        s = stringify(value);
      } catch (e) {
        throw messageOf(e);
      }
      if (s === undefined) throw `Unable to store ${stringify(k)}. Only plain serializable objects can be stored.`;
      const values = storedValues();
      const previous = values.get(k);
      const growth = s.length - (previous === undefined ? -k.length : previous.length);
      if (growth > storeBudget) throw storeLimitError;
      storeBudget -= growth;
      values.set(k, s);
      writes.set(k, s);
    }),
    load: ((key) => {
      let k;
      try {
        k = StringCtor(key);
      } catch (e) {
        passExit(e);
        throw "load key must be a string";
      }
      const s = storedValues().get(k);
      return s === undefined ? undefined : parse(s);
    }),
    exit() {
      throw EXIT;
    },
    yield_control() {
      send({ k: "yield" });
    },
    setTimeout(callback, delay) {
      if (typeof callback !== "function") throw "setTimeout expects a function callback";
      let ms = +delay; // ToNumber: a BigInt or Symbol throws, as in the reference
      ms = !isFiniteNumber(ms) || ms <= 0 ? 0 : trunc(ms);
      const id = ++nextTimerId;
      timers.set(id, true);
      const cell = new Int32ArrayCtor(new SAB(4));
      reflectApply(promiseThen, waitAsync(cell, 0, 0, ms > 0 ? ms : 1).value, [() => {
        if (!timers.delete(id) || finished) return;
        try {
          reflectApply(callback, undefined, []);
        } catch (e) {
          finish(e);
        }
      }]);
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
      if (!isFiniteNumber(n) || n <= 0) return undefined;
      timers.delete(trunc(n));
      return undefined;
    },
  };
  for (const name of Object.keys(helpers)) {
    defineProperty(g, name, { value: helpers[name], writable: true, configurable: true, enumerable: false });
  }
  const codeModeModule = { __proto__: null };
  for (const name of setup.module_exports) codeModeModule[name] = helpers[name];
  freeze(codeModeModule);

  // The session's tools, installed by `run` (the script cannot have run before). ALL_TOOLS
  // arrives as JSON text and is parsed on first read: most scripts never read it.
  // Bindings named HELPER_PREFIX + name are host helpers, not tools (the host sends them only
  // when its catalog is too large to declare): each becomes the global `name`, whose call
  // sends its arguments as one array; they come first, and are taken off ALL_TOOLS. With them,
  // `tools` also answers unknown names with a function, so a call to a misspelt tool rejects
  // with the host's suggestions instead of throwing "is not a function".
  const HELPER_PREFIX = "codemode:";
  let tools = {};
  let allToolsJson = "[]";
  let allTools = null;
  let helperCount = 0;
  const allToolsValue = (function allToolsValue() {
    if (allTools === null) {
      allTools = parse(allToolsJson);
      if (helperCount > 0) allTools = reflectApply(arraySlice, allTools, [helperCount]);
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
      return callTool(binding, true, values);
    };
  }
  function unknownNames(target) {
    return new ProxyCtor(target, {
      get(object, key) {
        if (typeof key !== "string" || key in object || key === "then" || key === "toJSON") return object[key];
        return toolFunction(key);
      },
    });
  }
  const installTools = (function installTools(names, entriesJson) {
    tools = {};
    helperCount = 0;
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      if (reflectApply(startsWith, name, [HELPER_PREFIX])) {
        helperCount++;
        const helperName = reflectApply(stringSlice, name, [HELPER_PREFIX.length]);
        defineProperty(g, helperName, { value: hostHelper(name), writable: true, configurable: true, enumerable: false });
        continue;
      }
      tools[name] = toolFunction(name);
    }
    allToolsJson = entriesJson;
    if (helperCount > 0) tools = unknownNames(tools);
    defineProperty(g, "tools", { value: tools, writable: true, configurable: true, enumerable: false });
    defineProperty(g, "ALL_TOOLS", {
      get: allToolsValue,
      set: (value) => defineProperty(g, "ALL_TOOLS", { value, writable: true, configurable: true, enumerable: false }),
      configurable: true,
      enumerable: false,
    });
  });

  // ---- modules -------------------------------------------------------------------------------
  function moduleFor(specifier) {
    if (specifier === "@openai/code_mode" || specifier === "openai/code_mode") return codeModeModule;
    if (specifier === "tools.js") {
      return freeze({ __proto__: null, ...tools, ALL_TOOLS: allToolsValue(), default: tools });
    }
    throw `Unsupported import in exec: ${specifier}`;
  }

  function dynamicImport(specifier) {
    try {
      return PromiseCtor.resolve(moduleFor(StringCtor(specifier)));
    } catch (e) {
      return PromiseCtor.reject(messageOf(e));
    }
  }

  // ---- host interface ------------------------------------------------------------------------
  const host = freeze({
    ring,
    run: ((toolNames, allToolsEntries, snapshotJson, budget, limitError, main) => {
      installTools(toolNames, allToolsEntries);
      storedJson = snapshotJson;
      storeBudget = budget;
      storeLimitError = limitError;
      let promise;
      try {
        promise = reflectApply(main, undefined, [moduleFor, dynamicImport]);
      } catch (e) {
        finish(e);
        return;
      }
      reflectApply(promiseThen, promise, [(() => finish(SUCCESS)), ((e) => finish(e))]);
    }),
    resolve: ((id, ok, payload) => {
      const call = pendingCalls.get(id);
      if (call === undefined) return;
      pendingCalls.delete(id);
      if (ok) call.resolve(parse(payload));
      else call.reject(payload);
    }),
    // The oldest overflow messages, about DRAIN_CHARS at most, as one JSON array text; the
    // host drains again while the count in the header is not 0.
    drain() {
      const batch = [];
      let chars = 0;
      while (overflowHead < overflow.length && (batch.length === 0 || chars + overflow[overflowHead].length <= DRAIN_CHARS)) {
        const s = overflow[overflowHead];
        overflow[overflowHead++] = undefined;
        chars += s.length;
        push(batch, s);
      }
      overflowChars -= chars;
      if (overflowHead === overflow.length) {
        overflow.length = 0;
        overflowHead = 0;
      }
      atomicsStore(header, 2, overflow.length - overflowHead);
      return "[" + reflectApply(arrayJoin, batch, [","]) + "]";
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
        `listed but not installed ${stringify(missing)}, installed but not listed ${stringify(unlisted)}, ` +
        `exported but not installed ${stringify(strayExports)}`,
    );
  }
  return host;
})(__CODEMODE_SETUP__);
__codemode_host__.ring;
//# sourceURL=codemode_prelude.js
