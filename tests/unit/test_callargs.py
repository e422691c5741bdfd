"""``levrt._cli.callargs``: a command line read as a call of the function it names, converted by
its annotations and checked against its signature and ``annot.Param``s, and the usage line built
from them. Pure: no file, no cluster; ``levrt run`` (tests/unit/test_run_calls.py) relies on it
to refuse a wrong call before any job opens."""

from __future__ import annotations

import enum
import pathlib
import types
from collections.abc import Sequence
from typing import Any, Literal, Optional

import pytest

from levrt import Cr, annot
from levrt._cli.callargs import Call, CallError, bind, converter, kind_of, runnables, suggest, usage


class Speed(enum.Enum):
    SLOW = "slow"
    FAST = "fast"


def typed(name: str, count: int = 1, ratio: float = 0.5, loud: bool = False, ports: list[int] | None = None,
          tags: list[str] = [], how: Literal["tcp", "udp"] = "tcp", speed: Speed = Speed.SLOW,  # noqa: B006
          out: pathlib.Path | None = None, extra: dict[str, Any] | None = None, limit: Optional[int] = None,  # noqa: UP045
          *, mode: str = "x") -> None:
    pass


def call(func: Any, *raw: str) -> Call:
    return bind(func, list(raw))


def refused(func: Any, *raw: str) -> str:
    with pytest.raises(CallError) as caught:
        bind(func, list(raw))
    return str(caught.value)


# -- values ------------------------------------------------------------------------------------------


def test_values_are_converted_by_the_annotations() -> None:
    got = call(typed, "bob", "3", "ratio=1e-3", "loud=yes", "ports=22, 80,443", "how=udp", "mode=y")
    assert got == Call(("bob", 3), {"ratio": 0.001, "loud": True, "ports": [22, 80, 443], "how": "udp", "mode": "y"})
    typed(*got.args, **got.kwargs)  # a call Python accepts


def test_each_type_reads_its_text() -> None:
    # Given by name, each value in its own call: the text and what the function receives.
    cases: list[tuple[str, Any]] = [
        ("count=12", 12), ("ratio=2.5", 2.5), ("loud=true", True), ("loud=OFF", False), ("loud=1", True),
        ("ports=22,80", [22, 80]), ("ports=", None), ("tags=a, b ,c", ["a", "b", "c"]), ("tags=", []),
        ("how=udp", "udp"), ("speed=fast", Speed.FAST), ("speed=SLOW", Speed.SLOW),
        ("out=/tmp/x", pathlib.Path("/tmp/x")), ('extra={"k": [1]}', {"k": [1]}), ("limit=7", 7), ("limit=", None),
        ("mode=y", "y"),
    ]
    for token, expected in cases:
        key = token.partition("=")[0]
        assert call(typed, "bob", token).kwargs == {key: expected}, token


def test_positional_values_fill_the_parameters_in_order() -> None:
    got = call(typed, "bob", "3", "0.25", "no")
    assert got.args == ("bob", 3, 0.25, False) and got.kwargs == {}


@pytest.mark.parametrize(("token", "said"), [
    ("count=ten", "count='ten' is not a whole number (e.g. 10)"),
    ("ratio=half", "ratio='half' is not a number"),
    ("loud=maybe", "loud='maybe' is not true or false"),
    ("ports=22,http", "ports='22,http' has the item 'http' that is not a whole number"),
    ("how=icmp", "how='icmp' is not one of tcp, udp"),
    ("speed=warp", "speed='warp' is not one of slow, fast"),
    ("extra=[1]", "extra='[1]' is not a JSON object"),
])
def test_a_value_of_the_wrong_type_is_named(token: str, said: str) -> None:
    assert said in refused(typed, "bob", token)


def test_unions_holding_str_take_the_text_and_others_try_their_members() -> None:
    def f(a: str | list[str], b: int | float = 0, c: int | None = None) -> None:
        pass

    assert call(f, "x,y").args == ("x,y",)
    assert call(f, "x", "b=2").kwargs == {"b": 2} and call(f, "x", "b=2.5").kwargs == {"b": 2.5}
    assert "b='two' is not any of INT or FLOAT" in refused(f, "x", "b=two")
    assert call(f, "x", "c=").kwargs == {"c": None}


def test_string_annotations_are_evaluated_and_unknown_ones_read_as_text() -> None:
    def f(n: int, m: NoSuchType = None) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    f.__annotations__ = {"n": "int", "m": "NoSuchType"}
    assert call(f, "3", "m=x") == Call((3,), {"m": "x"})


def test_a_type_no_command_line_can_give_is_refused_when_given() -> None:
    def f(image: str, cr: Cr | None = None) -> None:
        pass

    assert call(f, "busybox").args == ("busybox",)
    assert "cr takes a Cr, which a command line cannot give" in refused(f, "busybox", "cr=x")


def test_converters_name_their_type_for_the_usage_line() -> None:
    shown = {a: converter(a).shown for a in (str, int, float, bool, list[int], tuple[str, ...], Literal["a", "b"],
                                                 Speed, pathlib.Path, dict, int | None, Sequence[float])}
    assert list(shown.values()) == ["STR", "INT", "FLOAT", "BOOL", "INT,...", "STR,...", "a|b", "slow|fast", "PATH",
                                    "JSON", "INT", "FLOAT,..."]


# -- the call ----------------------------------------------------------------------------------------


def sweep(targets: str, ports: str = "1-1024", how: str = "tcp", limit: str = "4") -> None:
    pass


def test_name_value_is_a_keyword_and_the_rest_stays_in_order() -> None:
    got = call(sweep, "10.0.0.1,10.0.0.2", "how=syn-os", "22,80")
    assert got == Call(("10.0.0.1,10.0.0.2", "22,80"), {"how": "syn-os"})
    assert call(sweep, "-sT --script-args=x=1").args == ("-sT --script-args=x=1",)  # not NAME=: a value


def test_a_name_that_is_no_parameter_is_refused_with_the_way_to_pass_the_text() -> None:
    said = refused(sweep, "10.0.0.1", "mode=tcp")
    assert said == ("sweep has no parameter 'mode' (its parameters: targets, ports, how, limit); "
                    "to pass the text 'mode=tcp' itself, write targets=mode=tcp")
    assert call(sweep, "targets=mode=tcp").kwargs == {"targets": "mode=tcp"}


@pytest.mark.parametrize(("raw", "said"), [
    ((), "missing targets: give it as argument 1 or as targets=..."),
    (("a", "b", "c", "d", "e"), "sweep takes 4 arguments in order, got 5: 'e' is one too many"),
    (("a", "targets=b"), "targets is given twice: as argument 1 ('a') and as targets='b'"),
    (("a", "how=tcp", "how=syn-os"), "how= is given twice"),
])
def test_a_wrong_count_or_a_value_given_twice_is_one_line(raw: tuple[str, ...], said: str) -> None:
    assert refused(sweep, *raw) == said


def test_keyword_only_positional_only_and_the_catch_alls() -> None:
    def f(a: int, /, b: int = 0, *rest: int, c: str, **more: float) -> None:
        pass

    assert call(f, "1", "2", "3", "4", "c=x", "d=0.5") == Call((1, 2, 3, 4), {"c": "x", "d": 0.5})
    assert refused(f, "1") == "missing c: give it as c=..."
    assert "a of f is given by position only" in refused(f, "a=1", "c=x")
    assert usage(f, "f.py:f") == "levrt run f.py:f A [b=INT] [ARG...] c=STR [NAME=VALUE...]"


def test_annot_params_check_the_text_and_explain_it() -> None:
    @annot.meta(params=[annot.Param("ports", "ports and ranges", regex=r"^[0-9,\-]+$", holder=["22,80", "1-1024"]),
                        annot.Param("how", "scan kind", regex=["^tcp$", "^syn-os$"]),
                        annot.Param("targets", "addresses", holder="10.0.0.1")])
    def flagged(targets: str, ports: str = "1-1024", how: str = "tcp") -> Cr:
        return Cr("busybox:1.36")

    assert call(flagged, "10.0.0.1", "22,80", "syn-os").args == ("10.0.0.1", "22,80", "syn-os")
    assert refused(flagged, "10.0.0.1", "ports=http") == (
        r"ports='http' does not match ^[0-9,\-]+$ (ports and ranges, e.g. 22,80)")
    assert refused(flagged, "10.0.0.1", "how=udp") == "how='udp' does not match ^tcp$ or ^syn-os$ (scan kind)"
    assert refused(flagged) == "missing targets (addresses, e.g. 10.0.0.1): give it as argument 1 or as targets=..."


def test_a_broken_pattern_of_the_author_does_not_block_the_call() -> None:
    @annot.meta(params=[annot.Param("x", "", regex="([")])
    def f(x: str) -> None:
        pass

    assert call(f, "anything").args == ("anything",)


# -- what a module offers, and the usage line ------------------------------------------------------


def test_the_usage_line_shows_required_bare_and_optional_in_brackets() -> None:
    assert usage(sweep, "flows.py:sweep") == ("levrt run flows.py:sweep targets=STR [ports=STR] [how=STR] "
                                              "[limit=STR]")
    assert usage(typed, "t.py:typed").startswith("levrt run t.py:typed name=STR [count=INT] [ratio=FLOAT] [loud=BOOL] "
                                                 "[ports=INT,...] [tags=STR,...] [how=tcp|udp] [speed=slow|fast]")


def test_kinds_and_what_a_module_offers() -> None:
    module = types.ModuleType("tool")

    async def workflow() -> dict[str, Any]:
        return {}

    async def async_mode() -> Cr:
        return Cr("busybox:1.36")

    def mode() -> Cr:
        return Cr("busybox:1.36")

    @annot.meta(desc="declared")
    def declared(x: str):  # type: ignore[no-untyped-def]
        return Cr("busybox:1.36")

    def helper(x: str) -> int:
        return 1

    def _private() -> Cr:
        return Cr("busybox:1.36")

    for func in (workflow, async_mode, mode, declared, helper, _private):
        func.__module__ = "tool"
        setattr(module, func.__name__, func)
    module.imported = sweep  # type: ignore[attr-defined]  # defined elsewhere, not exported: not offered
    assert [kind_of(f) for f in (workflow, async_mode, mode, declared, helper)] == [
        "workflow", "mode", "mode", "mode", None]
    assert runnables(module) == {"workflow": "workflow", "async_mode": "mode", "mode": "mode", "declared": "mode"}
    assert suggest("wrkflow", runnables(module)) == "workflow"
    assert suggest("zzz", runnables(module)) == "workflow"  # nothing close: a workflow first
    assert suggest("zzz", {}) is None
