"""Time to accuracy: rnnsearch's default search against a plain Keras Tuner Hyperband script.

    python bench/time_to_accuracy.py                 # 20-minute budget each, full IMDB
    python bench/time_to_accuracy.py --budget 600    # another budget, in seconds
    python bench/time_to_accuracy.py --quick         # 60 s each on a 2,000-review slice
    python bench/time_to_accuracy.py --before        # also rnnsearch as before issue 9
    python bench/time_to_accuracy.py --skip-plain --compare-env RNNSEARCH_RECOMPUTE_STEPS=0
                                                     # now against steps stored as before
    git worktree add /tmp/before-17 b9c096f          # rnnsearch before issue 17, then:
    python bench/time_to_accuracy.py --skip-plain --rnnsearch-args "--space S --pruner median" \
        --compare-args "--space S" --compare-env PYTHONPATH=/tmp/before-17
                                                     # now against before, same space and seed
    python bench/time_to_accuracy.py --skip-plain --plain-config \
        '{"cell": "lstm", "units": 480, "lr": 0.001, "epochs": 1}'   # retrain a known plain winner

Both searches get the same wall-clock budget on the same machine, one after the other, and are
stopped when it runs out (rnnsearch with Ctrl-C, which it handles cleanly; Keras Tuner is killed).
The plain script is Keras Tuner as people write it today (see PLAIN below): SimpleRNN, LSTM or
GRU; units 32-512 step 32; learning rate in {1e-2, 1e-3, 1e-4}; Embedding 128; maxlen 500;
Hyperband max epochs 10, factor 3; EarlyStopping; validation_split 0.2. Reported: best validation
accuracy over time, the time each first reaches the threshold (0.87), and the test accuracy of
each one's best configuration retrained on the full training set for the epochs its best
validation score took, and tested on the test set (rnnsearch's through `rnnsearch retrain`; with
--quick both train on the slice, and the plain one tests on as many test reviews).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, REPO, RNNSEARCH, table, write_result  # noqa: E402

PLAIN = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, keras_tuner as kt, numpy as np
npz, limit, log_path, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
start = time.time()
def load_imdb(path, num_words=10000):
    # keras.datasets.imdb.load_data's reading of its file, for an offline copy of it; the same
    # arrays as Keras' own np.load with pickles on, read without unpickling anything but numbers
    from search.datasets.safe_npz import load_npz
    f = load_npz(path)
    parts = [(f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])]
    rng = np.random.RandomState(113)
    out = []
    for x, y in parts:
        idx = np.arange(len(x)); rng.shuffle(idx)
        x = [[1] + [w + 3 if w + 3 < num_words else 2 for w in s] for s in x[idx]]
        out.append((np.array(x, dtype=object), y[idx]))
    return out
(x_train, y_train), _ = load_imdb(npz)
if limit:
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x_train))[:limit]
    x_train, y_train = x_train[idx], y_train[idx]
x_train = keras.utils.pad_sequences(x_train, maxlen=500)

def build(hp):
    cell = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[
        hp.Choice("cell", ["simple", "lstm", "gru"])]
    model = keras.Sequential([keras.layers.Embedding(10000, 128),
                              cell(hp.Int("units", 32, 512, step=32)),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(hp.Choice("lr", [1e-2, 1e-3, 1e-4])),
                  "binary_crossentropy", metrics=["accuracy"])
    return model

class Log(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        with open(log_path, "a") as f:
            f.write(json.dumps({"t": time.time() - start, "epoch": epoch + 1,
                                "val_accuracy": float(logs["val_accuracy"]),
                                "hp": tuner_ref[0].oracle.ongoing_trials and
                                      {k: v for k, v in list(tuner_ref[0].oracle.ongoing_trials.values())[0].hyperparameters.values.items()
                                       if not k.startswith("tuner/")}}) + "\n")

tuner = kt.Hyperband(build, objective="val_accuracy", max_epochs=10, factor=3,
                     directory=workdir, project_name="plain", seed=0)
tuner_ref = [tuner]
tuner.search(x_train, y_train, validation_split=0.2, epochs=10,
             callbacks=[keras.callbacks.EarlyStopping(patience=2), Log()], verbose=0)
"""

PLAIN_LOADER = PLAIN.split("def load_imdb")[1].split("(x_train, y_train), _")[0]
PLAIN_LOADER = "def load_imdb" + PLAIN_LOADER

PLAIN_RETRAIN = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy as np
npz, limit, epochs, cfg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
keras.utils.set_random_seed(0)
exec(PLAIN_LOADER)
(x, y), (xt, yt) = load_imdb(npz)
if limit:
    idx = np.random.default_rng(0).permutation(len(x))[:limit]
    x, y = x[idx], y[idx]
    # quick mode: the first `limit` test reviews (Keras' test order is already shuffled)
    xt, yt = xt[:limit], yt[:limit]
x, xt = keras.utils.pad_sequences(x, maxlen=500), keras.utils.pad_sequences(xt, maxlen=500)
cell = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cfg["cell"]]
model = keras.Sequential([keras.layers.Embedding(10000, 128), cell(cfg["units"]),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(keras.optimizers.Adam(cfg["lr"]), "binary_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
loss, acc = model.evaluate(xt, yt, verbose=0)
print(json.dumps({"test_accuracy": float(acc), "test_loss": float(loss), "epochs": epochs,
                  "test_examples": int(len(yt))}))
"""


#: The default space before issue 9's changes: no head, maxlen, vocabulary or embedding choice,
#: no start configurations. `--before` runs it without bucketing and without --patience.
BEFORE_SPACE = """
name = "default-before"
description = "the default space before issue 9"

[dimensions]
cell = { choice = ["simple", "lstm", "gru"] }
units = { low = 16, high = 256, log = true }
bidirectional = { choice = [false, true] }
dropout = { low = 0.0, high = 0.5 }
learning_rate = { low = 1e-4, high = 1e-2, log = true }
vocab_size = 10000
maxlen = 200
embedding_dim = 32
batch_size = 64
"""


def before_space(tmp: str) -> str:
    path = Path(tmp) / "default-before.toml"
    path.write_text(BEFORE_SPACE)
    return str(path)


def epoch_curve(db_path: Path, started: float) -> list[dict]:
    """Best validation accuracy so far after each epoch of any trial, by wall-clock time.

    Epochs, not finished trials, as the plain script logs them: the same clock for both.
    """
    import sqlite3
    from datetime import timezone

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "select e.recorded_at, e.val_accuracy, t.number from rnnsearch_epochs e "
            "join rnnsearch_trials t on t.trial_id = e.trial_id "
            "where e.val_accuracy is not null order by e.recorded_at"
        ).fetchall()
    from datetime import datetime

    curve, best = [], 0.0
    for recorded_at, value, number in rows:
        when = datetime.fromisoformat(recorded_at).replace(tzinfo=timezone.utc).timestamp()
        if value > best:
            best = value
            curve.append(
                {"t": round(when - started, 1), "best_val_accuracy": best, "trial": number}
            )
    return curve


def run_rnnsearch(
    budget: float,
    limit: int,
    tmp: str,
    before: bool = False,
    extra_args: tuple[str, ...] = (),
    name: str = "tta",
    env: dict[str, str] | None = None,
) -> dict:
    url = f"sqlite:///{tmp}/{name}{'-before' if before else ''}.db"
    space = before_space(tmp) if before else "default"
    args = [
        RNNSEARCH,
        "run",
        "--study",
        "tta",
        "--space",
        space,
        "--trials",
        "10000",
        "--data",
        str(IMDB_NPZ),
        "--max-epochs",
        "5",
        "--seed",
        "0",
        "--quiet",
        "--storage",
        url,
    ]
    if before:
        args.append("--no-bucketing")
    else:
        # end a trial one epoch after its best (the plain script has EarlyStopping too)
        args += ["--patience", "1"]
    if limit:
        args += ["--limit", str(limit)]
    args += list(extra_args)
    started = time.time()
    # A shell's background job ignores SIGINT and children inherit that; rnnsearch must hear it.
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, **(env or {})},
    )
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            # The second Ctrl-C aborts at once; what finished is in the database already.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    from storage import StudyDatabase

    curve = epoch_curve(Path(url.removeprefix("sqlite:///")), started)
    db = StudyDatabase(url, create=False)
    top = db.best("tta", top=1)
    trials = db.trials("tta")
    states = [t.state for t in trials]
    per_trial = [
        {
            "number": t.number,
            "state": str(t.state),
            "seconds": t.duration_s,
            "epochs": t.epochs,
            "compile_seconds": t.extra.get("compile_seconds"),
            "value": t.value,
        }
        for t in trials
    ]
    db.dispose()
    return {
        "finished_trials": sum(s in ("complete", "pruned") for s in states),
        "states": {s: states.count(s) for s in sorted(set(states))},
        "trials": per_trial,
        "curve": curve,
        "best_config": top[0].config if top else None,
        "best_epochs": top[0].extra.get("best_epoch") if top else None,
        "test": retrain_rnnsearch(url, tmp, limit) if top else None,
    }


def retrain_rnnsearch(url: str, tmp: str, limit: int) -> dict:
    """`rnnsearch retrain` as a user runs it: the best trial, for its best epoch count, on the
    whole training set (the study's slice with --quick), tested once on the test set."""
    args = [RNNSEARCH, "retrain", "tta", "--storage", url, "--format", "json"]
    args += ["--save", str(Path(tmp) / f"{Path(url).stem}-best.keras")]
    if limit:
        args += ["--limit", str(limit)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    res = json.loads(out.stdout)
    return {k: res[k] for k in ("test_accuracy", "test_loss", "epochs", "test_examples", "trial")}


def run_plain(budget: float, limit: int, tmp: str) -> dict:
    log = Path(tmp) / "plain.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAIN, str(IMDB_NPZ), str(limit), str(log), tmp],
        cwd=REPO,  # its loader imports search.datasets.safe_npz from this checkout
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    curve, best, best_hp, best_epoch = [], 0.0, None, None
    for line in log.read_text().splitlines() if log.exists() else []:
        rec = json.loads(line)
        if rec["val_accuracy"] > best:
            best, best_hp, best_epoch = rec["val_accuracy"], rec["hp"], rec.get("epoch")
            curve.append({"t": round(rec["t"], 1), "best_val_accuracy": best})
    return {"curve": curve, "best_config": best_hp, "best_epochs": best_epoch}


def retrain_plain(cfg: dict | None, limit: int, epochs: int) -> dict | None:
    """The plain script's winner retrained as its author would: same model, all training data,
    for as many epochs as its best validation score took; tested on the test set."""
    if not cfg:
        return None
    code = PLAIN_RETRAIN.replace("exec(PLAIN_LOADER)", PLAIN_LOADER)
    out = subprocess.run(
        [sys.executable, "-c", code, str(IMDB_NPZ), str(limit), str(epochs), json.dumps(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_to(curve: list[dict], threshold: float) -> float | None:
    return next((p["t"] for p in curve if p["best_val_accuracy"] >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=None, help="seconds per search")
    parser.add_argument("--threshold", type=float, default=0.87)
    parser.add_argument(
        "--before",
        action="store_true",
        help="also run rnnsearch as it was before the speed-ups (no start "
        "configurations, no bucketing) in the same budget",
    )
    parser.add_argument(
        "--skip-plain",
        action="store_true",
        help="do not run the plain Keras Tuner search (its figures come from an earlier run)",
    )
    parser.add_argument(
        "--plain-config",
        type=json.loads,
        default=None,
        help='retrain this plain configuration, e.g. \'{"cell": "lstm", "units": 480, "lr": '
        '0.001, "epochs": 1}\', instead of the one the plain search finds (with --skip-plain: '
        "an earlier run's winner, from its JSON)",
    )
    parser.add_argument(
        "--rnnsearch-args",
        default="",
        help="more options for `rnnsearch run`, e.g. '--backend jax' or '--no-jit'",
    )
    parser.add_argument(
        "--compare-args",
        default=None,
        help="also run rnnsearch with these options instead of --rnnsearch-args, in the same "
        "budget, right after the first (e.g. '--workers 2'): the two side by side",
    )
    parser.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="also run rnnsearch with this environment variable set (repeatable; with "
        "--compare-args or alone), e.g. RNNSEARCH_RECOMPUTE_STEPS=0 for steps stored as before",
    )
    parser.add_argument(
        "--rnnsearch-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="run the first rnnsearch search with this environment variable set (repeatable), "
        "e.g. PYTHONPATH=/tmp/old-checkout to run an older rnnsearch first",
    )
    args = parser.parse_args()
    compare_env = dict(item.split("=", 1) for item in args.compare_env)
    first_env = dict(item.split("=", 1) for item in args.rnnsearch_env)
    if compare_env and args.compare_args is None:
        args.compare_args = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    budget = args.budget or (60.0 if args.quick else 1200.0)
    limit = 2000 if args.quick else 0
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_rnnsearch(
            budget, limit, tmp, extra_args=tuple(args.rnnsearch_args.split()), env=first_env
        )
        other = (
            run_rnnsearch(
                budget,
                limit,
                tmp,
                extra_args=tuple(args.compare_args.split()),
                name="compare",
                env=compare_env,
            )
            if args.compare_args is not None
            else None
        )
        plain = (
            {"curve": [], "best_config": None, "best_epochs": None, "skipped": True}
            if args.skip_plain
            else run_plain(budget, limit, tmp)
        )
        old = run_rnnsearch(budget, limit, tmp, before=True) if args.before else None
    if args.plain_config:
        plain["best_config"] = {k: v for k, v in args.plain_config.items() if k != "epochs"}
        plain["best_epochs"] = args.plain_config.get("epochs", plain.get("best_epochs"))
    plain["test"] = (
        retrain_plain(plain["best_config"], limit, plain.get("best_epochs") or 1)
        if plain["best_config"]
        else None
    )
    first_shown = " ".join(args.rnnsearch_env)
    results = [(f"{first_shown} rnnsearch {args.rnnsearch_args}".strip(), ours)]
    if other is not None:
        shown_env = " ".join(args.compare_env)
        results.append((f"{shown_env} rnnsearch {args.compare_args}".strip(), other))
    results.append(("plain-keras-tuner", plain))
    if old is not None:
        results.append(("rnnsearch-before", old))
    rows = []
    for name, res in results:
        curve = res["curve"]
        rows.append(
            [
                name,
                res.get("finished_trials", "-"),
                curve[-1]["best_val_accuracy"] if curve else None,
                time_to(curve, args.threshold),
                (res["test"] or {}).get("test_accuracy"),
            ]
        )
    print(f"budget {budget:.0f} s per search; threshold {args.threshold}")
    print(
        table(
            [
                "search",
                "finished_trials",
                "best_val_acc",
                f"t_to_{args.threshold}_s",
                "test_acc_retrained",
            ],
            rows,
        )
    )
    path = write_result(
        "time_to_accuracy-quick" if args.quick else "time_to_accuracy",
        {
            "budget_s": budget,
            "limit": limit,
            "rnnsearch": ours,
            "rnnsearch_args": args.rnnsearch_args,
            "compare": other,
            "compare_args": args.compare_args,
            "rnnsearch_env": first_env,
            "compare_env": compare_env,
            "plain": plain,
            "rnnsearch_before": old,
            "table": rows,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
