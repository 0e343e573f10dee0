"""Fine-tuning end to end on tiny files: each task's run directory and summary, pretrained vs scratch
initialisation, freezing and layer-wise LR decay as the loop sees them, adversarial training that perturbs the
embedding output only, early stopping that restores the best checkpoint, a user's head from the working
directory, exact resume, and the real SST-2 files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from model import preset
from model.config import ConfigError
from tests.train.conftest import FEW_STEPS, Files
from train.cli import main
from train.data.prepare import prepare
from train.data.tokenizer import Tokenizer
from train.evaluation.evaluate import evaluate
from train.finetune.config import DataFiles, FinetuneConfig, Source, finetune_train_config
from train.finetune.recipe import FinetuneTask, load_source
from train.finetune.splits import read_data
from train.pretrain import pretrain
from train.recipe import TrainConfig
from train.runtime.checkpoint import load_checkpoint
from train.runtime.optim import build_optimizer, set_lr


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str = "") -> set[str]:
    return {k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[prefix + k])}


def _backbone(run: Path) -> dict[str, torch.Tensor]:
    """A fine-tuned run's final backbone weights under the pretraining names."""
    last = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    return {k.removeprefix("backbone."): v for k, v in _weights(last).items() if k.startswith("backbone.")}


# --- the four tasks -----------------------------------------------------------------------------------------


def test_classify_from_the_cli_writes_a_self_describing_run(
    pretrained: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, f = tmp_path / "sst", files.classify
    args = [
        "finetune",
        "--from",
        str(pretrained),
        "--task",
        "classify",
        "--train",
        f.train,
        "--val",
        f.val,
        "--test",
        f.test,
        "--out",
        str(out),
        "--no-progress",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "precision  recall" in printed and "best val accuracy" in printed  # the per-class report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and summary["best_val_metric"] == summary["best_metric"]
    assert summary["steps"] == 3 and set(summary["val"]["per_class"]) == {"0", "1"}
    assert json.loads((out / "report_test.json").read_text()) == summary["test"]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["eval_every"] == 3 and config["train"]["restore_best"]  # an epoch is 6 steps
    assert config["model"]["dropout"] == 0.1 and config["model"]["attention"] == "auto"
    assert json.loads((out / "labels.json").read_text()) == {"labels": ["0", "1"]}
    pytest.importorskip("matplotlib")
    assert (out / "confusion_test.png").stat().st_size > 0
    assert main(["evaluate", "--run", str(out), "--data", f.test, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary["test"]  # the same form and numbers
    assert main(args) == 1 and "already holds a run" in capsys.readouterr().err  # refused unless --force
    assert main([*args, "--force", "--max-steps", "1"]) == 0


def test_tagging_reads_iob1_conll_and_scores_entities(tag_run: Path) -> None:
    summary = json.loads((tag_run / "summary.json").read_text())
    labels = json.loads((tag_run / "labels.json").read_text())["labels"]
    assert labels == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]  # IOB1 I-X starting an entity became B-X
    assert summary["metric"] == "f1" and {"precision", "recall", "f1", "per_type"} <= set(summary["test"])
    assert summary["test"]["support"] == 8 and summary["test"]["examples"] == 4  # 2 entities x 4 sentences


def test_tagging_is_bidirectional_by_default_and_evaluate_reads_it(tag_run: Path, files: Files) -> None:
    from train.runs import load_finetuned

    config = json.loads((tag_run / "config.json").read_text())
    assert config["model"]["attention_mask"] == "bidirectional" == config["finetune"]["attention_mask"]
    fin = load_finetuned(tag_run)
    attention = fin.model.backbone.transformer.h[0].attn
    assert fin.model.backbone.config.attention_mask == "bidirectional" and not attention.causal
    summary = json.loads((tag_run / "summary.json").read_text())
    assert evaluate(tag_run, files.tag.test)["f1"] == summary["test"]["f1"]


def test_attention_mask_defaults_per_task_and_generation_stays_causal(tune: Any, files: Files, tmp_path: Path) -> None:
    assert FinetuneConfig(task="tag").attention_mask == "bidirectional"
    assert FinetuneConfig(task="classify").attention_mask == "causal"
    assert FinetuneConfig(task="generate").attention_mask == "causal"
    with pytest.raises(ConfigError, match="attention_mask='bidirectional' is not allowed: expected 'causal'"):
        FinetuneConfig(task="generate", attention_mask="bidirectional")
    with pytest.raises(ConfigError, match="attention_mask='full'"):
        FinetuneConfig(attention_mask="full")
    out = tmp_path / "bi"
    summary = tune(out, files.classify, attention_mask="bidirectional", baseline=True)
    assert json.loads((out / "config.json").read_text())["model"]["attention_mask"] == "bidirectional"
    assert summary["baseline"]["name"] == "bag-of-words + bigram logistic regression"
    assert 0 <= summary["baseline"]["val"]["accuracy"] <= 1 and summary["baseline"]["test"]["examples"] > 0
    assert json.loads((out / "summary.json").read_text())["baseline"] == summary["baseline"]


def test_the_tag_baseline_sits_beside_the_model(tune: Any, files: Files, tmp_path: Path) -> None:
    summary = tune(tmp_path / "tag", files.tag, task="tag", baseline=True)
    base = summary["baseline"]
    assert base["name"].startswith("entity spans seen in training") and base["spans"] > 0
    assert {"precision", "recall", "f1"} <= set(base["test"]) and "f1" in summary["test"]
    with pytest.raises(ConfigError, match="only classify and tag have a baseline"):
        FinetuneConfig(task="generate", baseline=True)


def test_generation_learns_only_the_response(generate_run: Path, pretrained: Path, files: Files) -> None:
    summary = json.loads((generate_run / "summary.json").read_text())
    assert summary["metric"] == "val_loss" and summary["best_val_metric"] == pytest.approx(summary["val_loss"])
    assert summary["val"]["perplexity"] == pytest.approx(torch.tensor(summary["val"]["loss"]).exp().item())
    _, tokenizer, _ = load_source(Source(str(pretrained)), FinetuneConfig(), 0)
    data = read_data(FinetuneConfig(task="generate"), files.generate, tokenizer, 32)
    first = data.train.encoded[0]  # "say hi" -> " hi hi" + eot: 7 targets, the prompt has none
    assert sum(t != -100 for t in first.token_labels) == len(" hi hi") + 1


def test_regression_reports_mse_mae_and_pearson(tune: Any, files: Files, tmp_path: Path) -> None:
    summary = tune(tmp_path / "reg", files.regress, task="regress", metric="pearson", train={"optimizer": "sgd"})
    assert summary["metric"] == "pearson" and {"mse", "mae", "pearson"} <= set(summary["val"])
    assert summary["val"]["loss"] == pytest.approx(summary["val"]["mse"], rel=1e-4)


# --- where the backbone comes from --------------------------------------------------------------------------


def test_scratch_has_the_same_architecture_and_new_weights(
    tune: Any, pretrained: Path, files: Files, tmp_path: Path
) -> None:
    ft = FinetuneConfig()
    trained, tok_a, _ = load_source(Source(str(pretrained)), ft, seed=0)
    scratch, tok_b, _ = load_source(Source("scratch", like=str(pretrained)), ft, seed=0)
    assert scratch.config == trained.config and tok_a.hash == tok_b.hash
    a, b = trained.state_dict(), scratch.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert all(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight") and "norm" not in k)
    again, _, _ = load_source(Source("scratch", like=str(pretrained)), ft, seed=0)
    assert all(torch.equal(b[k], v) for k, v in again.state_dict().items())  # seeded
    tune(tmp_path / "s", files.classify, source=Source("scratch", like=str(pretrained)), train={"max_steps": 1})
    assert json.loads((tmp_path / "s" / "config.json").read_text())["source"]["run"] == "scratch"
    with pytest.raises(ConfigError, match="--like"):
        Source("scratch")


# --- freezing, layer-wise decay, adversarial training -------------------------------------------------------


def _task(pretrained: Path, files: Files, **ft: Any) -> FinetuneTask:
    config = FinetuneConfig(**ft)
    backbone, tokenizer, _ = load_source(Source(str(pretrained)), config, seed=0)
    data = read_data(config, files.classify, tokenizer, backbone.config.block_size)
    return FinetuneTask(backbone, tokenizer, config, data, finetune_train_config(24, config, **FEW_STEPS))


def test_layer_decay_gives_each_group_its_learning_rate(pretrained: Path, files: Files) -> None:
    task = _task(pretrained, files, layer_decay=0.5)
    optimizer = build_optimizer(task.param_groups(0.01), "adamw", 1e-3, (0.9, 0.95), 0.0, torch.device("cpu"))
    set_lr(optimizer, 1e-3)
    groups = task.param_groups(0.01)
    lr = {name: g["lr"] for g, group in zip(optimizer.param_groups, groups, strict=True) for name in group["names"]}
    assert lr["backbone.transformer.wte.weight"] == pytest.approx(1e-3 * 0.5**3)  # n_layer = 2
    assert lr["backbone.transformer.h.0.attn.c_attn.weight"] == pytest.approx(1e-3 * 0.5**2)
    assert lr["backbone.transformer.h.1.mlp.c_proj.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr["backbone.transformer.ln_f.weight"] == lr["head.score.weight"] == pytest.approx(1e-3)
    macro = _task(pretrained, files, metric="macro_f1")
    assert (macro.metric, macro.metric_mode, task.metric) == ("macro_f1", "max", "accuracy")


def test_the_schedule_follows_the_data_unless_set() -> None:
    plain = finetune_train_config(24, FinetuneConfig())  # batch 16: 2 steps an epoch, 3 epochs
    assert (plain.max_steps, plain.eval_every, plain.checkpoint_every, plain.lr) == (6, 2, 2, 1e-4)
    assert plain.restore_best and plain.patience == 3 and plain.eval_batches == 0
    probe = finetune_train_config(24, FinetuneConfig(freeze="all-but-head", epochs=1), max_steps=50)
    assert (probe.max_steps, probe.warmup_steps, probe.eval_every, probe.lr) == (50, 3, 2, 1e-3)


@pytest.mark.parametrize("spec", ["bottom:1", "embeddings"])
def test_frozen_parameters_do_not_move_and_the_rest_trains(
    tune: Any, pretrained: Path, files: Files, tmp_path: Path, spec: str
) -> None:
    tune(tmp_path / "f", files.classify, freeze=spec, train={"lr": 1e-2})
    changed = _changed(_weights(pretrained / "checkpoints" / "best.pt"), _backbone(tmp_path / "f"))
    moved_blocks = {k.split(".")[2] for k in changed if k.startswith("transformer.h.")}
    assert not any("wte" in k for k in changed)  # the tied LM head is the same tensor: frozen with it
    assert moved_blocks == ({"1"} if spec == "bottom:1" else {"0", "1"})


def test_fgm_on_a_linear_probe_moves_only_the_head(tune: Any, pretrained: Path, files: Files, tmp_path: Path) -> None:
    summary = tune(tmp_path / "p", files.classify, freeze="all-but-head", adversarial="fgm", epsilon=0.5)
    assert _changed(_weights(pretrained / "checkpoints" / "best.pt"), _backbone(tmp_path / "p")) == set()
    last = sorted((tmp_path / "p" / "checkpoints").glob("step-*.pt"))[-1]
    head = _weights(last)["head.score.weight"]
    assert torch.isfinite(head).all() and summary["train_loss"] > 0
    frozen = json.loads((tmp_path / "p" / "config.json").read_text())["frozen"]
    assert "backbone.transformer.wte.weight" in frozen and not any(n.startswith("head.") for n in frozen)


def test_pgd_training_runs_and_the_embedding_still_trains(
    tune: Any, pretrained: Path, files: Files, tmp_path: Path
) -> None:
    summary = tune(tmp_path / "pgd", files.classify, adversarial="pgd", epsilon=0.5, adv_steps=2, train={"lr": 1e-2})
    assert summary["steps"] == 2 and torch.isfinite(torch.tensor(summary["train_loss"]))
    changed = _changed(_weights(pretrained / "checkpoints" / "best.pt"), _backbone(tmp_path / "pgd"))
    assert "transformer.wte.weight" in changed  # perturbing the embedding output does not freeze the weight


# --- early stopping and resume ------------------------------------------------------------------------------


def test_early_stopping_after_patience_restores_the_best(
    tune: Any, files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trajectory = iter([0.5, 0.8, 0.6, 0.7, 0.9, 0.9])

    def evaluate_by_script(self: FinetuneTask, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        return {"accuracy": next(trajectory), "val_loss": 1.0}

    monkeypatch.setattr(FinetuneTask, "evaluate", evaluate_by_script)
    out = tmp_path / "stop"
    summary = tune(out, files.classify, train={"max_steps": 10, "eval_every": 1, "patience": 2, "lr": 1e-2})
    assert summary["steps"] == 4 and summary["stopped_early"] and summary["best_val_metric"] == 0.8
    best = evaluate(out, files.classify.val, checkpoint="best")
    last = evaluate(out, files.classify.val, checkpoint="last")
    assert summary["val"]["loss"] == pytest.approx(best["loss"]) and best["loss"] != last["loss"]


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tune: Any, files: Files, tmp_path: Path) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    tune(full, files.classify, train={"max_steps": 4, "keep_last": 5, "eval_every": 2, "checkpoint_every": 2})
    shutil.copytree(full, cut)
    (cut / "checkpoints" / "step-00000004.pt").unlink()  # as if killed after step 2's checkpoint
    (cut / "summary.json").unlink()
    assert main(["finetune", "--out", str(cut), "--resume", "--no-progress"]) == 0
    a, b = (_weights(run / "checkpoints" / "step-00000004.pt") for run in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)  # dropout 0.1 and the batch order resumed exactly
    assert (full / "metrics.jsonl").read_text().count("\n") == (cut / "metrics.jsonl").read_text().count("\n")


# --- a user's head ------------------------------------------------------------------------------------------

USER_HEAD = '''
import torch
import torch.nn.functional as F
from torch import nn

from model.heads import Head, mean_pool


class MaxMeanHead(Head):
    """Classify from the max- and mean-pooled hidden states, with label smoothing."""

    def __init__(self, config, num_labels):
        super().__init__(config, num_labels)
        self.score = nn.Linear(2 * config.n_embd, num_labels)

    def project(self, h, batch):  # h: (B, T, C) final hidden states
        mask = batch["attention_mask"]
        h_max = h.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, C)
        return self.score(torch.cat([h_max, mean_pool(h, mask)], -1))  # (B, K)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.float(), batch["labels"], label_smoothing=0.1)

    def predict(self, outputs, batch):
        return outputs.argmax(-1)
'''


def test_a_users_head_from_the_working_directory(
    pretrained: Path,
    files: Files,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "my_heads.py").write_text(USER_HEAD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_heads", raising=False)
    f = files.classify
    assert (
        main(
            [
                "finetune",
                "--from",
                str(pretrained),
                "--task",
                "classify",
                "--head",
                "my_heads:MaxMeanHead",
                "--train",
                f.train,
                "--val",
                f.val,
                "--out",
                "run",
                "--no-progress",
                "--max-steps",
                "1",
            ]
        )
        == 0
    )
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["head"] == "my_heads:MaxMeanHead"
    sys.modules.pop("my_heads")  # evaluate and predict import it again, as a fresh process would
    assert main(["predict", "--run", "run", "--text", "great acting"]) == 1  # not because the run names it
    assert "pass --head my_heads:MaxMeanHead to import it" in capsys.readouterr().err
    assert "my_heads" not in sys.modules
    assert main(["predict", "--run", "run", "--text", "great acting", "--head", "my_heads:MaxMeanHead"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("\tgreat acting")
    assert (
        main(
            [
                "finetune",
                "--from",
                str(pretrained),
                "--task",
                "classify",
                "--head",
                "my_heads:Nope",
                "--train",
                f.train,
                "--val",
                f.val,
                "--out",
                "run2",
            ]
        )
        == 1
    )
    assert "has no 'Nope'" in capsys.readouterr().err
    sys.modules.pop("my_heads", None)


# --- the real files -----------------------------------------------------------------------------------------

SST2 = Path("/work/shared/data/sst2")


@pytest.mark.skipif(not SST2.exists(), reason="needs /work/shared/data")
def test_real_sst2_dev_file_fine_tunes(tune: Any, tmp_path: Path) -> None:
    """The real format end to end (a char tokenizer trained on the file itself), not a result."""
    dev = SST2 / "dev.tsv"
    prepare([str(dev)], "char", tmp_path / "data")
    vocab = Tokenizer.load(tmp_path / "data").vocab_size
    pretrain(
        tmp_path / "data",
        tmp_path / "pre",
        preset("debug", vocab_size=vocab, block_size=32),
        TrainConfig(max_steps=1, batch_size=2, eval_every=1, eval_batches=1),
        progress=False,
        log=lambda *_: None,
    )
    summary = tune(
        tmp_path / "ft",
        DataFiles(str(dev), str(dev)),
        source=Source(str(tmp_path / "pre")),
        max_train_examples=200,
        train={"max_steps": 2, "eval_batches": 2},
    )
    assert summary["val"]["examples"] == 872 and summary["val"]["truncated"] > 0  # cut to 32 characters
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["data"]["examples"]["train"] == 200 and config["labels"] == ["0", "1"]
