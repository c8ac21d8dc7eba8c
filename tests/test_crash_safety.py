"""Saves survive kills and full disks, and never touch what they did not write (issue 21).

- kill -9 at seeded random moments during save_adapter, save_pretrained and a training checkpoint
  (a forked child saving two versions in turn): the folder then holds one version whole, loadable;
- a full disk (a fault-injecting writer: half the bytes, then ENOSPC) leaves the previous files
  intact and raises an OSError naming the target;
- save functions refuse a folder holding files they did not write, and links;
- checkpoint.json cannot name files outside its run folder; a linked log.jsonl is refused;
- (slow) a real `tasks.finetune` process killed at seeded random points, restarted each time on
  the same --out, ends with the adapter of an uninterrupted run, bit for bit."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fuzz_fixtures import corpus  # noqa: F401
from fuzz_harness import TALLY, check_cli
from safetensors.torch import load_file
from synthetic_tasks import write_mimic

import models
from minipeft import LoraConfig, files, inject, load_adapter, save_adapter
from minipeft.training import checkpoint as ckpt
from minipeft.training.optim import build_adamw, named_trainable
from tasks import finetune

ROOT = Path(__file__).resolve().parent.parent


def _lora_model(model_dir):
    model = models.load_pretrained(model_dir, head="sequence-classification", num_labels=2)
    inject(model, LoraConfig(r=2, alpha=2, targets=("query", "value"), modules_to_save=("classifier",)))
    return model


def _set_version(model, v: int) -> None:
    with torch.no_grad():
        for _, p in named_trainable(model):
            p.fill_(float(v + 1))


def _version_of(tensors) -> set:
    return {float(t.detach().flatten()[0]) for t in tensors}


def _kill_while(save, check, tag, kills, seed) -> None:
    """Fork a child that calls save(i) for i = 0, 1, 2, ... until killed; kill it at a seeded
    random moment; check() the result; `kills` times."""
    rng = random.Random(seed)
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:  # the child: save forever, never return into pytest
            try:
                i = 0
                while True:
                    save(i % 2)
                    i += 1
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.005, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        check()
        TALLY["kills"] += 1


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # a forked child must not wait on the parent's thread pool
    yield
    torch.set_num_threads(old)


def test_kill_during_save_adapter_leaves_one_whole_version(tmp_path, corpus, one_thread):  # noqa: F811
    model, out = _lora_model(corpus["model"]), tmp_path / "adapter"
    _set_version(model, 0)
    save_adapter(model, out)

    def save(v):
        _set_version(model, v)
        save_adapter(model, out)

    def check():
        fresh = models.load_pretrained(corpus["model"], head="sequence-classification", num_labels=2)
        load_adapter(fresh, out)  # verifies the manifest against the tensors and config
        assert len(_version_of(p for _, p in named_trainable(fresh) if p.requires_grad)) == 1

    _kill_while(save, check, "save_adapter", kills=8, seed=0)
    save_adapter(model, out)  # the next save clears what dead writers left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_kill_during_save_pretrained_leaves_one_whole_version(tmp_path, corpus, one_thread):  # noqa: F811
    model = models.load_pretrained(corpus["model"])
    out = models.save_pretrained(model, tmp_path / "m", tokenizer_dir=corpus["model"])
    key = "embeddings.word_embeddings.weight"

    def save(v):
        with torch.no_grad():
            model.state_dict()[key].fill_(float(v + 1))
        models.save_pretrained(model, out, tokenizer_dir=corpus["model"])

    def check():
        loaded = models.load_pretrained(out)
        assert len(_version_of([loaded.state_dict()[key]])) == 1
        assert models.load_tokenizer(out).vocab_size == 64

    _kill_while(save, check, "save_pretrained", kills=8, seed=1)


def test_kill_during_checkpoint_leaves_a_loadable_one(tmp_path, corpus, one_thread):  # noqa: F811
    model = _lora_model(corpus["model"])
    named, opt = named_trainable(model), build_adamw(model, 1e-3, 0.0)
    state = {"step": 1, "epoch": 0, "position": 1, "best_file": None, "config": {}}
    ckpt.save_checkpoint(tmp_path, named, opt, state)

    def save(v):
        _set_version(model, v)
        ckpt.save_checkpoint(tmp_path, named, opt, dict(state, step=state["step"] + v))

    def check():
        doc, tensors = ckpt.load_checkpoint(tmp_path)
        values = _version_of(t for k, t in tensors.items() if k.startswith("model."))
        assert len(values) == 1 and doc["tensors"] == f"checkpoint-{doc['step']:08d}.safetensors"

    _kill_while(save, check, "checkpoint", kills=8, seed=2)


def _enospc_after_half(real):
    def write(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return write


def test_full_disk_keeps_the_previous_files(tmp_path, corpus, monkeypatch):  # noqa: F811
    model, out = _lora_model(corpus["model"]), tmp_path / "adapter"
    _set_version(model, 0)
    save_adapter(model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    pretrained = models.save_pretrained(models.load_pretrained(corpus["model"]), tmp_path / "m")
    m_before = {p.name: p.read_bytes() for p in pretrained.iterdir()}
    named, opt = named_trainable(model), build_adamw(model, 1e-3, 0.0)
    (tmp_path / "run").mkdir()
    ckpt.save_checkpoint(tmp_path / "run", named, opt, {"step": 1, "best_file": None})

    monkeypatch.setattr(files, "save_file", _enospc_after_half(files.save_file))
    monkeypatch.setattr(models.loader, "save_file", _enospc_after_half(models.loader.save_file))
    _set_version(model, 1)
    with pytest.raises(OSError, match=f"No space left on device while writing {out}") as e:
        save_adapter(model, out)
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="No space left on device while writing .*m; the previous files"):
        models.save_pretrained(models.load_pretrained(corpus["model"]), pretrained)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save_checkpoint(tmp_path / "run", named, opt, {"step": 2, "best_file": None})

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert {p.name: p.read_bytes() for p in pretrained.iterdir()} == m_before
    assert ckpt.load_checkpoint(tmp_path / "run")[0]["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "m", "run"]  # no temporaries left
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint-00000001.safetensors",
        "checkpoint.json",
    ]
    fresh = models.load_pretrained(corpus["model"], head="sequence-classification", num_labels=2)
    load_adapter(fresh, out)
    assert _version_of(p for _, p in named_trainable(fresh)) == {1.0}


def test_saves_refuse_folders_and_links_they_do_not_own(tmp_path, corpus):  # noqa: F811
    model = _lora_model(corpus["model"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="notes.txt.*refusing to replace"):
        save_adapter(model, mine)
    plain = models.load_pretrained(corpus["model"])
    with pytest.raises(ValueError, match="notes.txt.*refusing to replace"):
        models.save_pretrained(plain, mine)
    os.symlink(mine, tmp_path / "link")
    with pytest.raises(ValueError, match="symbolic link"):
        save_adapter(model, tmp_path / "link")
    with pytest.raises(ValueError, match="symbolic link"):
        models.save_pretrained(plain, tmp_path / "link")
    assert (
        sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
        and (mine / "notes.txt").read_text() == "keep me"
    )
    # files get the umask's mode, not 0600
    save_adapter(model, tmp_path / "a")
    mask = os.umask(0)
    os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "a").iterdir()} == {oct(0o666 & ~mask)}


def test_checkpoint_names_cannot_leave_the_run_folder(tmp_path, corpus):  # noqa: F811
    model = _lora_model(corpus["model"])
    named, opt = named_trainable(model), build_adamw(model, 1e-3, 0.0)
    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_checkpoint(run, named, opt, {"step": 3, "best_file": None})
    (tmp_path / "x.safetensors").write_bytes((run / "checkpoint-00000003.safetensors").read_bytes())
    doc = json.loads((run / "checkpoint.json").read_text())
    for key, value in (
        ("tensors", "../x.safetensors"),
        ("tensors", "/etc/passwd"),
        ("best_file", "../x.safetensors"),
    ):
        (run / "checkpoint.json").write_text(json.dumps({**doc, key: value}))
        with pytest.raises(ValueError, match=f"{key}=.*expected a file name"):
            ckpt.load_checkpoint(run)
    (run / "checkpoint.json").write_text("[1]")
    with pytest.raises(ValueError, match="checkpoint.json"):
        ckpt.load_checkpoint(run)


FAST = [
    "--task",
    "mimic-mp",
    "--epochs",
    "2",
    "--batch-size",
    "4",
    "--max-length",
    "24",
    "--checkpoint-every",
    "1",
]
FAST += ["--rank", "2", "--targets", "query,value", "--max-train-examples", "12", "--max-eval-examples", "6"]
FAST += ["--no-progress", "--seed", "3"]


def test_linked_log_is_refused_and_the_target_untouched(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "run"
    argv = [*FAST, "--data-dir", corpus["data"], "--model", corpus["model"], "--out", out]
    settings = finetune.run_settings(finetune.build_parser().parse_args([str(a) for a in argv]))
    files.claim_dir(out, program="tasks.finetune", settings=settings)
    (tmp_path / "outside.txt").write_text("not yours")
    os.symlink(tmp_path / "outside.txt", out / "log.jsonl")
    assert check_cli(finetune.main, argv, tmp_path, ["log.jsonl"], writes=(out / "run.json",)) == "clear"
    assert (tmp_path / "outside.txt").read_text() == "not yours"


def _finetune_proc(args, out) -> subprocess.Popen:
    """tasks.finetune in a child process, its stderr in `_stderr(out)`: a file, not a pipe, so
    nothing is left open when a child is killed, and a chatty child never blocks on a full pipe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tasks.finetune", *map(str, args), "--out", str(out)]
    with open(_stderr(out), "wb") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _stderr(out: Path) -> Path:
    return Path(f"{out}.stderr")


def _tensors(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _events(out: Path) -> list[str]:
    log = out / "log.jsonl"
    events = []
    for ln in log.read_text().splitlines() if log.exists() else []:
        try:  # the last line may be half-written while we read
            events.append(json.loads(ln).get("event", ""))
        except json.JSONDecodeError:
            pass
    return events


def _step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def _wait(proc, until) -> bool:
    """Poll until until() holds (True) or the process ended (False)."""
    while proc.poll() is None:
        if until():
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_finetune_killed_at_random_points_resumes_bit_for_bit(tmp_path, tiny_model):
    """Kill -9 a real tasks.finetune at seeded random points, on one --out, restarting it each
    time: four when the checkpoint reaches a random optimiser step (mid-epoch, at an epoch's
    evaluation), two at a random moment after training ended (the test pass, the save, the
    marker); the final adapter
    and test metrics equal an uninterrupted run's, bit for bit, and no checkpoint is left."""
    data = write_mimic(tmp_path / "data", "mp")
    args = [*FAST, "--data-dir", data, "--model", tiny_model]
    ref = _finetune_proc(args, tmp_path / "ref")
    _wait(ref, lambda: "end" in _events(tmp_path / "ref"))
    t_end = time.perf_counter()
    assert ref.wait(timeout=600) == 0, _stderr(tmp_path / "ref").read_text()[-2000:]
    tail = time.perf_counter() - t_end
    steps = json.loads((tmp_path / "ref" / "metrics.json").read_text())["steps"]

    rng, out, kills = random.Random(21), tmp_path / "killed", 0
    targets = sorted(rng.sample(range(1, steps), 4))
    for i in range(6):
        proc = _finetune_proc(args, out)
        if i < 4:  # training: once checkpoint.json (written atomically) reaches the target step
            landed = _wait(proc, lambda t=targets[i]: _step(out) >= t)
        else:  # after training: during the test pass, the save or the marker
            ends = _events(out).count("end")
            landed = _wait(proc, lambda ends=ends: _events(out).count("end") > ends)
            # the first half of the reference tail: load changes, and this tail may be shorter than that one
            time.sleep(rng.uniform(0.0, tail / 2))
        if landed and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=600)
    final = _finetune_proc(args, out)
    code = final.wait(timeout=600)
    err = _stderr(out).read_text()
    assert code == 0 or "that run is finished" in err, err[-2000:]
    a, b = _tensors(tmp_path / "ref"), _tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ref_metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["test"] == ref_metrics["test"]
    assert not list(out.glob("checkpoint*")) and not list(out.glob("best-epoch*"))
    assert kills >= 5, f"only {kills} of 6 kills landed before the process ended"
    TALLY["kills"] += kills
