"""benchmarks.cli_args, the flags the benchmark command lines share: parsing, order, overridden help,
and the rule that a help text given for a flag that is not added is a programming error."""

import argparse

import pytest

from benchmarks import cli_args
from tasks.cli import comma_list

DEFAULTS = dict(seeds="12,34", epochs=3, max_length=64, max_eval_examples=50, out="runs/x")


def _help_of(p: argparse.ArgumentParser) -> dict[str, str]:
    return {a.option_strings[0]: a.help for a in p._actions if a.option_strings and a.dest != "help"}


def test_ints_and_names_parse_comma_lists():
    assert cli_args.ints("2, 8,,32") == [2, 8, 32]
    assert comma_list(" query ,value,") == ("query", "value")
    for bad in ("2,x", " , "):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_args.ints(bad)


def test_positive_int_names_the_flag():
    assert cli_args.positive_int("4", "--threads") == 4
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="--threads must be a positive integer or 'auto'"):
            cli_args.positive_int(bad, "--threads")


def test_add_keeps_order_defaults_and_overridden_help():
    p = cli_args.parser("benchmarks.x", "what x does")
    cli_args.add(p, DEFAULTS, "--epochs", *cli_args.SIZE, "--out", out="where x writes")
    flags = list(_help_of(p))
    assert flags == ["--epochs", *cli_args.SIZE, "--out"]
    helps = _help_of(p)
    assert helps["--epochs"] == f"epochs per run (default {DEFAULTS['epochs']})"
    assert helps["--out"] == "where x writes"
    args = p.parse_args(["--max-length", "32"])
    assert (args.epochs, args.batch_size, args.max_length) == (3, 16, 32)
    assert (args.max_train_examples, args.max_eval_examples, args.out) == (0, 50, "runs/x")
    assert p.format_usage().startswith("usage: python -m benchmarks.x ")


def test_add_refuses_help_for_a_flag_it_does_not_add():
    p = argparse.ArgumentParser()
    with pytest.raises(AssertionError, match="seeds"):
        cli_args.add(p, DEFAULTS, "--epochs", seeds="never added")


def test_add_timing_shows_its_defaults():
    p = cli_args.parser("benchmarks.x", "")
    cli_args.add_timing(p, warmup=(3, "untimed passes"), repeats=(15, "timed passes"))
    text = p.format_help()
    assert "untimed passes (default 3)" in text and "timed passes (default 15)" in text
    args = p.parse_args([])
    assert (args.warmup, args.repeats, args.threads) == (3, 15, 0)
