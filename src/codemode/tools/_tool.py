"""`Tool`: one nested tool as the script sees it, and how plain Python functions become one.

A tool's handler takes one argument — the parsed JSON arguments (a dict for function tools, a
string for freeform tools) — and may be sync or async. What it returns crosses into JavaScript
as JSON. An exception it raises rejects the script's promise with the exception's message.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast, get_type_hints

import docstring_parser
import pydantic
import pydantic.fields

from codemode._threads import run_sync
from codemode.errors import ToolError, UsageError

ToolKind = Literal["function", "freeform"]
Handler = Callable[[Any], Any | Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])
ApprovalRequirement = bool | Callable[[Any], bool | Awaitable[bool]]
"""Whether a call needs approval: always (True), never (False), or per call given its arguments."""

_REQUIRES_APPROVAL_ATTRIBUTE = "__codemode_requires_approval__"
_ANY_OUTPUT = pydantic.TypeAdapter(Any)  # for functions without a return type: built once, used per call


@dataclass(frozen=True)
class Tool:
    """A nested tool callable from the script as `await tools.<name>(args)`.

    Args:
        name: the raw tool name; the script sees it normalized to a JS identifier.
        description: what the model reads about the tool.
        handler: called with the parsed arguments (dict, or str for freeform tools).
        input_schema: JSON Schema of the arguments; arguments are validated against it.
        output_schema: JSON Schema of the result, used to type the tool for the model.
        kind: "function" (JSON object arguments) or "freeform" (one string input).
        namespace: optional namespace; the script name becomes `namespace__name`.
        namespace_description: shown once above the namespace's tools.
        deferred: listed in `ALL_TOOLS` but left out of the exec description.
        requires_approval: True if every call waits for approval (`CodeMode(approve=...)`, then
            `CodeMode.approve`/`reject`), or a function of the validated arguments saying
            whether this call must (sync or async; if it raises, the call must).
        retry_on_restart: with a durable store (`CodeMode(store=...)`), a call of this tool
            that was running when its host stopped is run again when the cell resumes (say so
            only for tools that are safe to run twice); otherwise the script's call rejects
            saying the host restarted during it and it may or may not have run.
    """

    name: str
    description: str
    handler: Handler
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    kind: ToolKind = "function"
    namespace: str | None = None
    namespace_description: str | None = None
    deferred: bool = False
    requires_approval: ApprovalRequirement = False
    retry_on_restart: bool = False
    _validator: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise UsageError("a tool needs a non-empty name")
        if self.kind not in ("function", "freeform"):
            raise UsageError(f"tool `{self.name}`: kind must be 'function' or 'freeform'")
        if self._validator is None and self.input_schema is not None and self.kind == "function":
            object.__setattr__(self, "_validator", schema_validator(self.name, self.input_schema))

    def validate(self, arguments: Any) -> None:
        """Raise `ToolError` naming the offending field if the arguments break the schema."""
        if self._validator is not None:
            self._validator(arguments)

    async def needs_approval(self, arguments: Any) -> bool:
        """Whether this call (with validated `arguments`) must wait for approval before it runs."""
        requirement = self.requires_approval
        if isinstance(requirement, bool):
            return requirement
        try:
            answer = requirement(arguments)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:  # unsure means ask: a failing check never runs the tool unasked
            return True
        return answer is not False

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        namespace: str | None = None,
        requires_approval: ApprovalRequirement | None = None,
        retry_on_restart: bool = False,
    ) -> Tool:
        """Build a tool from a typed Python function (sync or async).

        The name defaults to the function's name, the description to its docstring; the
        input schema comes from the parameters' type hints (parameter descriptions from the
        docstring's Args section) and the output schema from the return annotation.
        `requires_approval` defaults to what `@requires_approval` marked on the function.
        A bound method, a `functools.partial` (the parameters it binds are left out of the
        schema) or an object with a typed `__call__` (named after its class) works the same.

        Raises:
            UsageError: `fn` is a class, has no inspectable signature, or takes *args/**kwargs.
        """
        target = _described_callable(fn)
        if requires_approval is None:
            requires_approval = any(
                getattr(marked, _REQUIRES_APPROVAL_ATTRIBUTE, False) for marked in (fn, target.function)
            )
        tool = _function_tool(fn, target, name=name, description=description, namespace=namespace)
        if requires_approval is not False or retry_on_restart:
            tool = replace(tool, requires_approval=requires_approval, retry_on_restart=retry_on_restart)
        return tool


def requires_approval(fn: F) -> F:
    """Mark a Python function so that, as a tool, each of its calls waits for approval.

    `@requires_approval` above `def delete_file(path: str) -> None: ...`; the function itself is
    unchanged. `Tool.from_function(fn, requires_approval=...)` says the same per tool.
    """
    setattr(fn, _REQUIRES_APPROVAL_ATTRIBUTE, True)
    return fn


def schema_validator(tool_name: str, schema: dict[str, Any]) -> Callable[[Any], None]:
    """A check of arguments against a JSON Schema that raises `ToolError` naming the field.

    Raises:
        UsageError: the schema itself is invalid.
    """
    from jsonschema import exceptions as schema_errors, validators

    try:
        validator_cls: Any = cast(Any, validators).validator_for(schema)  # jsonschema is untyped
        validator_cls.check_schema(schema)
        validator: Any = validator_cls(schema)
    except schema_errors.SchemaError as exc:
        raise UsageError(f"tool `{tool_name}` has an invalid input schema: {exc.message}") from exc

    def validate(arguments: Any) -> None:
        error = cast(
            schema_errors.ValidationError | None,
            cast(Any, schema_errors).best_match(validator.iter_errors(arguments)),
        )
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            field_text = f" at `{where}`" if where else ""
            raise ToolError(f"tool `{tool_name}` got invalid arguments{field_text}: {error.message}")

    return validate


def _function_tool(
    fn: Callable[..., Any],
    target: _Described,
    *,
    name: str | None,
    description: str | None,
    namespace: str | None,
) -> Tool:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise UsageError(
            f"{fn!r} has no signature to describe to the model; wrap it in a typed function, "
            "or build codemode.Tool(name, description, handler, input_schema=...)"
        ) from None
    hints = get_type_hints(target.function, include_extras=True)
    doc = docstring_parser.parse(target.doc)
    param_docs = {p.arg_name: p.description for p in doc.params if p.description}
    tool_name = name or target.name

    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name in target.bound_keywords:
            continue  # given by a functools.partial: not the model's to choose
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UsageError(f"tool `{tool_name}`: *args/**kwargs cannot be described to the model")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        # `Annotated[int, Field(description=..., ge=1)]` keeps its description and constraints;
        # the docstring's Args entry describes what the annotation leaves undescribed.
        field_info = pydantic.fields.FieldInfo.from_annotated_attribute(annotation, default)
        if field_info.description is None:
            field_info.description = param_docs.get(param.name)
        fields[param.name] = (field_info.annotation, field_info)
    args_model = pydantic.create_model(
        f"{target.name}_args", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    input_schema = args_model.model_json_schema()
    input_schema.pop("title", None)
    for prop in input_schema.get("properties", {}).values():
        prop.pop("title", None)

    return_hint = hints.get("return", inspect.Signature.empty)
    output_adapter: pydantic.TypeAdapter[Any] | None = None
    output_schema: dict[str, Any] | None = None
    if return_hint not in (inspect.Signature.empty, Any, None, type(None)):
        output_adapter = pydantic.TypeAdapter(return_hint)
        output_schema = output_adapter.json_schema(mode="serialization")
        output_schema.pop("title", None)

    is_async = inspect.iscoroutinefunction(target.function)

    def validate(arguments: Any) -> None:
        try:
            args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolError(_describe_validation_error(tool_name, exc)) from None

    async def handler(arguments: dict[str, Any]) -> Any:
        try:
            parsed = args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolError(_describe_validation_error(tool_name, exc)) from None
        kwargs = {key: getattr(parsed, key) for key in fields}
        if is_async:
            result = await fn(**kwargs)
        else:
            result = await run_sync(fn, **kwargs)
        if output_adapter is not None:
            return output_adapter.dump_python(result, mode="json")
        return _ANY_OUTPUT.dump_python(result, mode="json")

    summary = description if description is not None else _doc_summary(doc)
    return Tool(
        name=tool_name,
        description=summary,
        handler=handler,
        input_schema=input_schema,
        output_schema=output_schema,
        namespace=namespace,
        _validator=validate,
    )


@dataclass(frozen=True)
class _Described:
    """What a callable given as a tool describes itself with: the Python function whose type
    hints, docstring and async-ness count, its name, and the parameters a partial fixed already."""

    function: Callable[..., Any]
    name: str
    doc: str
    bound_keywords: frozenset[str] = frozenset()


def _described_callable(fn: Callable[..., Any]) -> _Described:
    """The function behind `fn`: itself, a bound method's function, a `functools.partial`'s
    (its keyword-bound parameters are not the model's to set), or a callable object's `__call__`
    (named after its class).

    Raises:
        UsageError: `fn` is a class (calling it builds an object, not a tool result).
    """
    if isinstance(fn, type):
        raise UsageError(
            f"{fn.__name__} is a class, not a tool: pass a function, a bound method "
            f"(`{fn.__name__}(...).method`), or an instance whose class defines `__call__`"
        )
    if isinstance(fn, functools.partial):
        inner = _described_callable(fn.func)
        return replace(inner, bound_keywords=inner.bound_keywords | frozenset(fn.keywords))
    if inspect.ismethod(fn):
        return _Described(fn.__func__, fn.__name__, inspect.getdoc(fn) or "")
    if inspect.isroutine(fn):
        return _Described(fn, fn.__name__, inspect.getdoc(fn) or "")
    call = type(fn).__call__
    doc = getattr(call, "__doc__", None) or type(fn).__doc__ or ""
    return _Described(call, type(fn).__name__, inspect.cleandoc(doc))


def _doc_summary(doc: docstring_parser.Docstring) -> str:
    parts = [doc.short_description or "", doc.long_description or ""]
    return "\n\n".join(p for p in parts if p).strip()


def _describe_validation_error(tool_name: str, exc: pydantic.ValidationError) -> str:
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        problems.append(f"`{where}`: {error['msg']}")
    return f"tool `{tool_name}` got invalid arguments: " + "; ".join(problems)
