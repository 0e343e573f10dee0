"""`cgpt fit` through the real entry point, and plans from the fitted law: `cgpt plan --constants summary.json`
predicts with the fitted constants and says so; with the published ones it says the loss is not a forecast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.planner.test_fit import TRUTH, synthetic
from train import cli
from train.planner import scaling
from train.planner.plan import Plan, make_plan

KEYS = set(
    "a b a_ci b_ci E A B alpha beta E_ci A_ci B_ci alpha_ci beta_ci n_runs n_budgets approach2 approach3".split()
)


@pytest.fixture
def cgpt(capsys: pytest.CaptureFixture) -> object:
    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = synthetic(11, sigma=0.003)
    path = tmp_path_factory.mktemp("fit") / "runs.jsonl"
    rows = zip(runs.params, runs.tokens, runs.flops, runs.loss, runs.budget, strict=True)
    path.write_text(
        "".join(json.dumps(dict(params=n, tokens=d, flops=c, loss=x, budget=b)) + "\n" for n, d, c, x, b in rows)
    )
    return path


@pytest.fixture(scope="module")
def fitted(runs_file: Path) -> Path:
    out = runs_file.parent / "fitted"
    assert cli.main(["fit", "--runs", str(runs_file), "--bootstrap", "40", "--out", str(out)]) == 0
    return out


def test_json_holds_the_contract(cgpt, runs_file: Path) -> None:
    code, out, _ = cgpt("fit", "--runs", str(runs_file), "--bootstrap", "30", "--json")
    d = json.loads(out)
    assert code == 0 and KEYS <= set(d)
    assert d["n_runs"] == 24 and d["n_budgets"] == 4 and d["ab_from"] == "approach2"
    assert d["a_ci"][0] < d["a"] < d["a_ci"][1] and d["alpha_ci"][0] < d["alpha"] < d["alpha_ci"][1]
    assert d["alpha"] == pytest.approx(TRUTH.alpha, abs=0.03)


def test_out_writes_the_summary_and_the_table_compares(cgpt, fitted: Path, runs_file: Path) -> None:
    summary = json.loads((fitted / "summary.json").read_text())
    assert KEYS <= set(summary) and summary["runs_files"] == [str(runs_file)]
    pytest.importorskip("matplotlib")
    assert {p.name for p in fitted.glob("*.png")} == {"isoflop.png", "scaling.png", "contours.png"}
    code, out, _ = cgpt("fit", "--runs", str(runs_file), "--bootstrap", "0", "--approach", "2")
    assert code == 0 and "paper 0.49, replication 0.513" in out and "Approach 3" not in out


@pytest.mark.parametrize(
    "content, argv, message",
    [
        ("", [], "no runs"),
        ('{"params": 1}\n', [], ":1: missing"),
        (None, ["--bootstrap", "-1"], "--bootstrap"),
        (None, ["--approach", "4"], "--approach"),
        (None, ["--params", "all"], "--params"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cgpt, tmp_path: Path, runs_file: Path, content: str | None, argv: list[str], message: str
) -> None:
    path = runs_file
    if content is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
    code, out, err = cgpt("fit", "--runs", str(path), "--out", str(tmp_path / "out"), *argv)
    assert code != 0 and out == "" and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_plan_from_the_fitted_law(cgpt, fitted: Path) -> None:
    summary = fitted / "summary.json"
    code, out, _ = cgpt("plan", "--flops", "1e17", "--vocab-size", "512", "--constants", str(summary), "--json")
    plan = json.loads(out)
    fit = json.loads(summary.read_text())
    law = scaling.LossConstants(*(fit[k] for k in ("E", "A", "B", "alpha", "beta")))
    assert code == 0 and plan["law"] == "fitted" and plan["constants"] == str(summary)
    assert plan["predicted_loss"] == pytest.approx(scaling.predicted_loss(plan["params"], plan["tokens"], law))
    assert plan["target_params"] == pytest.approx(scaling.compute_optimal(1e17, law)[0], rel=1e-6)
    assert "fitted on your own runs" in plan["predicted_loss_basis"]
    code, table, _ = cgpt("plan", "--flops", "1e17", "--vocab-size", "512", "--constants", str(summary))
    assert code == 0 and "a law fitted on your own runs" in table and f"constants fitted in {summary}" in table


def test_published_laws_say_they_are_not_a_forecast(cgpt) -> None:
    for constants, kind in (("besiroglu", "replication"), ("unrounded", "paper")):
        code, out, _ = cgpt("plan", "--flops", "1e17", "--constants", constants, "--json")
        plan = json.loads(out)
        assert code == 0 and plan["law"] == kind and "not a forecast for your data" in plan["predicted_loss_basis"]
    code, table, _ = cgpt("plan", "--flops", "1e17")
    assert "not a forecast for your data" in table


def test_a_fitted_plan_round_trips_and_an_old_plan_file_still_reads(tmp_path: Path, fitted: Path) -> None:
    plan = make_plan("flops", 1e16, 512, 128, constants=str(fitted / "summary.json"))
    plan.to_json(tmp_path / "plan.json")
    assert Plan.from_json(tmp_path / "plan.json") == plan
    old = make_plan("flops", 1e16, 512, 128).to_dict()
    del old["law"], old["predicted_loss_basis"]  # a plan written before fitted laws
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Plan.from_json(tmp_path / "old.json").law == "replication"


def test_summaries_a_plan_cannot_use_are_one_line_errors(cgpt, tmp_path: Path, runs_file: Path) -> None:
    cases = {
        "approach2": (["--approach", "2"], "no Approach 3 fit"),
        "kaplan": (["--params", "non-embedding"], "--params total"),
    }
    rows = [
        {**json.loads(line), "params_non_embedding": 1.0 + i}
        for i, line in enumerate(runs_file.read_text().splitlines())
    ]
    ne = tmp_path / "ne.jsonl"
    ne.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, (argv, message) in cases.items():
        assert cgpt("fit", "--runs", str(ne), "--bootstrap", "0", "--out", str(tmp_path / name), *argv)[0] == 0
        code, out, err = cgpt("plan", "--flops", "1e16", "--constants", str(tmp_path / name / "summary.json"))
        assert code == 1 and out == "" and err.count("\n") == 1 and message in err
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = cgpt("plan", "--flops", "1e16", "--constants", str(tmp_path / "junk.json"))
    assert code == 1 and "not a summary.json written by `cgpt fit`" in err


def test_fit_imports_no_torch(runs_file: Path) -> None:
    """`cgpt fit` is numpy only: usable without a GPU, quickly, where torch is not even installed."""
    import subprocess
    import sys

    from tests.paths import REPO

    code = (
        "import sys\n"
        "from train.cli import main\n"
        f"assert main(['fit', '--runs', {str(runs_file)!r}, '--bootstrap', '5', '--json']) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)
