"""The rnnsearch command line: thin commands over search.service and storage.

TensorFlow and Optuna are imported inside commands only, so `rnnsearch --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

try:  # Typer >= 0.2x vendors Click as typer._click; older releases use Click itself.
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def _param_name(param: Any) -> str:
    """An option's long name (--workers), or an argument's metavar (STUDY)."""
    opts = [o for o in getattr(param, "opts", []) or [] if o.startswith("-")]
    if opts:
        return max(opts, key=len)
    name = getattr(param, "human_readable_name", None) or getattr(param, "name", None) or "value"
    return str(name).upper()


def _given(args: Sequence[str], param: Any) -> str | None:
    """The value the command line gave an option, as typed (for the error message)."""
    opts = [o for o in getattr(param, "opts", []) or [] if o.startswith("-")]
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "=") and opt.startswith("--"):
                found = arg.split("=", 1)[1]
    return found


def usage_error_line(exc: Exception, args: Sequence[str] = ()) -> str:
    """One line for a Click/Typer usage error: the option, what was expected, what was got."""
    if isinstance(exc, click_exceptions.MissingParameter):
        name = _param_name(exc.param) if exc.param is not None else "a value"
        is_arg = getattr(exc.param, "param_type_name", "") == "argument"
        kind = "an argument" if is_arg else "a value"
        text = f"{name}: missing; expected {kind}"
    elif isinstance(exc, click_exceptions.BadParameter) and exc.param is not None:
        message = str(exc.message).removeprefix("Value error, ")
        given = _given(args, exc.param)
        if given is not None and repr(given) not in message:
            shown = repr(given) if len(given) <= 60 else repr(given[:57]) + "..."
            message = f"{message.rstrip('.')}, got {shown}"
        text = f"{_param_name(exc.param)}: {message}"
    elif isinstance(exc, click_exceptions.BadParameter) and exc.param_hint:
        hint = exc.param_hint if isinstance(exc.param_hint, str) else exc.param_hint[0]
        text = f"{hint}: {exc.message}"
    elif isinstance(exc, click_exceptions.NoSuchOption):
        text = f"{exc.option_name}: no such option"
        if exc.possibilities:
            text += f"; did you mean {' or '.join(sorted(exc.possibilities))}?"
    elif isinstance(exc, click_exceptions.BadOptionUsage):
        text = f"{exc.option_name}: {exc.message}"
    else:
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    text = " ".join(str(text).split()).rstrip(".")
    return f"rnnsearch: error: {text}"


class _Group(TyperGroup):
    """The rnnsearch group: usage errors are one line on stderr and exit 2, never a box.

    Overriding ``main`` (not only the console entry point) makes ``CliRunner`` tests see exactly
    what a shell sees.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click_exceptions.NoArgsIsHelpError as exc:
            exc.show()
            rv = EXIT_USAGE
        except click_exceptions.UsageError as exc:
            if not standalone_mode:
                raise
            given = list(args) if args is not None else sys.argv[1:]
            typer.echo(usage_error_line(exc, given), err=True)
            rv = EXIT_USAGE
        except click_exceptions.ClickException as exc:
            if not standalone_mode:
                raise
            typer.echo(f"rnnsearch: error: {' '.join(exc.format_message().split())}", err=True)
            rv = exc.exit_code
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("rnnsearch: interrupted", err=True)
            rv = EXIT_INTERRUPTED
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_Group,
    name="rnnsearch",
    help="Hyperparameter search for recurrent neural networks, every trial in a study database.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Click's plain help wraps to the terminal (COLUMNS=80 included) and never cuts an option's
    # name; Rich's boxed panels squeezed each help text to a few characters there.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
spaces_app = typer.Typer(
    help="List, show and validate search spaces.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(spaces_app, name="spaces")


def version_text() -> str:
    """``rnnsearch X.Y.Z``: the installed distribution's version (written once, in
    pyproject.toml)."""
    from search import __version__

    return f"rnnsearch {__version__}"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Show rnnsearch's version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show tracebacks of errors (every command; the same as RNNSEARCH_DEBUG=1).",
        ),
    ] = False,
) -> None:
    """Hyperparameter search for recurrent neural networks, every trial in a study database."""
    if debug:
        os.environ["RNNSEARCH_DEBUG"] = "1"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class EngineName(str, Enum):
    optuna = "optuna"
    hyperband = "hyperband"


class BackendName(str, Enum):
    jax = "jax"
    tensorflow = "tensorflow"


# Options shared by several commands, defined once.
BackendOpt = Annotated[
    BackendName | None,
    typer.Option(
        "--backend",
        help="Keras backend that trains the models (jax: fastest per epoch, 10-25 s of "
        "compiling per trial). Default: $KERAS_BACKEND, else the study's, else jax.",
        show_default=False,
    ),
]
JitOpt = Annotated[
    bool | None,
    typer.Option(
        "--jit/--no-jit",
        help="Compiled training steps under tensorflow (XLA; jax always compiles). Default: "
        "the study's, else off.",
        show_default=False,
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Study database URL (sqlite:///PATH or postgresql://...). "
        "Default: $RNNSEARCH_STORAGE, else sqlite:///rnnsearch.db.",
        show_default=False,
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
StudyArg = Annotated[str, typer.Argument(help="Study name.", show_default=False)]
# How `run` and `spaces show --data` read a data file: one definition of each option.
LimitOpt = Annotated[
    int | None, typer.Option(help="Train on a stratified slice of N training examples.")
]
TextColOpt = Annotated[
    str | None,
    typer.Option("--text-col", help="Text column of a CSV/JSONL file (default: text)."),
]
LabelColOpt = Annotated[
    str | None,
    typer.Option("--label-col", help="Label column of a CSV/JSONL file (default: label)."),
]
SplitColOpt = Annotated[
    str | None,
    typer.Option(
        "--split-col",
        help="Column holding train/test (default: 'split' if present; else a test split "
        "is held out with a recorded seed).",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
WhereOpt = Annotated[
    str | None,
    typer.Option(
        "--where",
        help='Only trials whose parameters match, e.g. "cell=lstm and bidirectional=true"; '
        "=, !=, <, <=, >, >=, in (a, b), and, or, not, parentheses.",
        show_default=False,
    ),
]

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Show no progress (the same as --progress off).")
]


class ProgressMode(str, Enum):
    auto = "auto"
    bar = "bar"
    log = "log"
    off = "off"


ProgressOpt = Annotated[
    ProgressMode,
    typer.Option(
        "--progress",
        help="How progress shows on stderr: bar (a live display), log (one flushed line per "
        "epoch and per trial), off; auto: bar in a terminal, log elsewhere (nohup, CI).",
    ),
]
TensorBoardOpt = Annotated[
    str | None,
    typer.Option(
        "--tensorboard",
        help="Write TensorBoard logs of each trial to DIR/<study>/trial-NNNN "
        "(tensorboard --logdir DIR).",
        metavar="DIR",
        show_default=False,
    ),
]

T = TypeVar("T")


def _fail(message: str, code: int) -> None:
    typer.echo(f"rnnsearch: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


#: The KeyError message of Optuna's RDB storage for a study or trial it no longer holds.
OPTUNA_NOT_FOUND = "Record does not exist."


def guarded(fn: Callable[[], T], debug: bool = False) -> T:
    """Run a command body; our exceptions become one line on stderr and an exit code."""
    from search.errors import DataError, SearchError, UsageError
    from spaces import SpaceError
    from storage import StorageError
    from storage.errors import (
        DamagedStudyError,
        NotAStudyDatabaseError,
        ReadOnlyDatabaseError,
        StorageURLError,
        StudyNotFoundError,
    )
    from storage.filters import FilterError

    debug = debug or bool(os.environ.get("RNNSEARCH_DEBUG"))
    _quiet_libraries()
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        typer.echo("rnnsearch: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (
        SpaceError,
        UsageError,
        DataError,
        StorageURLError,
        NotAStudyDatabaseError,
        StudyNotFoundError,
        DamagedStudyError,
        ReadOnlyDatabaseError,
        FilterError,
    ) as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_USAGE)
    except (StorageError, SearchError) as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_FAILURE)
    except KeyError as exc:
        # Optuna's RDB storage, asked for a study or trial that is no longer there
        if debug or exc.args != (OPTUNA_NOT_FOUND,):
            raise
        _fail(
            "the study was deleted while this command ran (`delete --force`, or another tool); "
            "it stopped",
            EXIT_FAILURE,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _quiet_libraries() -> None:
    """TensorFlow's C++ start-up chatter and Optuna's experimental-feature warnings are noise."""
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*experimental.*")


def _echo(text: str) -> None:
    typer.echo(text)


@app.command()
def run(
    study: Annotated[str, typer.Option("--study", "-s", help="Study name (created if new).")],
    space: Annotated[
        str | None,
        typer.Option(
            help="Built-in space name or TOML file. Default: the study's, else 'default'."
        ),
    ] = None,
    engine: Annotated[
        EngineName | None, typer.Option(help="Search engine. Default: the study's, else optuna.")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Finished trials to run (default 20). On an existing study that reached its "
            "target: this many more; on an interrupted one, it first reaches its target."
        ),
    ] = None,
    add: Annotated[int | None, typer.Option(help="Add this many trials to the target.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="'imdb' (Keras' loader), a .npz (Keras' imdb layout, or numeric x_train, "
            "y_train and optionally x_test, y_test), a text .csv/.csv.gz/.jsonl, a long-format "
            "numeric .csv (sequence_id, step, features, label), or a folder train/LABEL/*.txt."
        ),
    ] = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    split_col: SplitColOpt = None,
    bucketing: Annotated[
        bool | None,
        typer.Option(
            "--bucketing/--no-bucketing",
            help="Batch sequences by length, each batch padded to one of at most 8 widths "
            "taken from the data's lengths (default on).",
        ),
    ] = None,
    limit: LimitOpt = None,
    max_epochs: Annotated[
        int | None, typer.Option("--max-epochs", help="Epochs per trial at most (default 5).")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            "--patience",
            help="End a trial once its validation accuracy has not improved for N epochs "
            "(stored with the study; 0: off, the default).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling and weights.")] = None,
    allow_space_change: Annotated[
        bool, typer.Option("--allow-space-change", help="Continue a study with a changed space.")
    ] = False,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            help="Stop once the study has used this much training time in all (e.g. 90s, 20m, "
            "2h): no trial starts after it, and a trial running then ends after its epoch; "
            "stored with the study.",
        ),
    ] = None,
    keep_checkpoints: Annotated[
        int | None,
        typer.Option(
            "--keep-checkpoints", help="Keep the final checkpoints of this many best trials (3)."
        ),
    ] = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-dir",
            help="Folder for the study's checkpoints and Keras Tuner state (stored with the "
            "study; default: beside a SQLite database, else ~/.cache/rnnsearch/databases). Give "
            "workers on several machines one shared folder.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Worker processes on this study; each gets cores/N TensorFlow threads.",
        ),
    ] = 1,
    factor: Annotated[
        int | None,
        typer.Option("--factor", help="Hyperband: reduction factor of epochs and trials (3)."),
    ] = None,
    hyperband_iterations: Annotated[
        int | None,
        typer.Option("--hyperband-iterations", help="Hyperband: iterations of its schedule (1)."),
    ] = None,
    objectives: Annotated[
        str | None,
        typer.Option(
            "--objectives",
            help="What trials are judged on, comma-separated: val_accuracy (max), val_loss, "
            "latency_ms, params, model_mb (min). Two or more: a multi-objective search (see "
            "best --pareto); stored with the study. Default: val_accuracy.",
            show_default=False,
        ),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            "--sampler",
            help="Optuna sampler: tpe or nsga2 (stored with the study; default tpe).",
            show_default=False,
        ),
    ] = None,
    backend: BackendOpt = None,
    jit: JitOpt = None,
    pruner: Annotated[
        str | None,
        typer.Option(
            "--pruner",
            help="Optuna engine: median, median-warmup (default), patient, halving or none "
            "(stored with the study).",
            show_default=False,
        ),
    ] = None,
    tensorboard: TensorBoardOpt = None,
    storage: StorageOpt = None,
    quiet: QuietOpt = False,
    progress: ProgressOpt = ProgressMode.auto,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Launch (or continue) a search; every trial lands in the study database."""
    _run_command(
        dict(
            study=study,
            space=space,
            engine=engine.value if engine else None,
            trials=trials,
            add=add,
            data=data,
            limit=limit,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
            allow_space_change=allow_space_change,
            storage=storage,
            time_budget=time_budget,
            keep_checkpoints=keep_checkpoints,
            checkpoint_dir=checkpoint_dir,
            workers=workers,
            text_col=text_col,
            label_col=label_col,
            split_col=split_col,
            bucketing=bucketing,
            hyperband_factor=factor,
            hyperband_iterations=hyperband_iterations,
            objectives=objectives,
            sampler=sampler,
            backend=backend.value if backend else None,
            jit_compile=jit,
            pruner=pruner,
            tensorboard=tensorboard,
        ),
        progress=ProgressMode.off if quiet else progress,
        fmt=fmt,
        debug=debug,
        resume_only=False,
    )


@app.command()
def worker(
    study: StudyArg,
    tensorboard: TensorBoardOpt = None,
    storage: StorageOpt = None,
    quiet: QuietOpt = False,
    progress: ProgressOpt = ProgressMode.auto,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Join an existing study as one more worker (from another shell or machine).

    The worker uses the study's stored space, data and seed, claims trials until the study's
    target is reached, and stops. Run it on several machines against one PostgreSQL URL.
    """
    _run_command(
        dict(study=study, storage=storage, join_only=True, tensorboard=tensorboard),
        progress=ProgressMode.off if quiet else progress,
        fmt=fmt,
        debug=debug,
        resume_only=True,
    )


@app.command()
def resume(
    study: StudyArg,
    trials: Annotated[
        int | None, typer.Option(help="Total finished trials the study should reach.")
    ] = None,
    add: Annotated[int | None, typer.Option(help="Add this many trials to the target.")] = None,
    backend: BackendOpt = None,
    jit: JitOpt = None,
    tensorboard: TensorBoardOpt = None,
    storage: StorageOpt = None,
    quiet: QuietOpt = False,
    progress: ProgressOpt = ProgressMode.auto,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Continue an interrupted study to its target with its stored space, data and seed."""
    _run_command(
        dict(
            study=study,
            trials=trials,
            add=add,
            storage=storage,
            tensorboard=tensorboard,
            backend=backend.value if backend else None,
            jit_compile=jit,
        ),
        progress=ProgressMode.off if quiet else progress,
        fmt=fmt,
        debug=debug,
        resume_only=True,
    )


def _check_run_args(args: dict[str, Any], *, resume_only: bool) -> None:
    """Every value of run/resume/worker checked before anything is opened or created (the
    checks themselves are search.plan.check_request's, shared with the Python API)."""
    from search.plan import RunRequest, check_request
    from search.validation import parse_duration

    if args.get("time_budget") is not None:
        args["time_budget"] = parse_duration(args["time_budget"])
    check_request(RunRequest(**args, resume_only=resume_only))


def _open_for_reading(storage: str | None) -> Any:
    """The study database of a query command: never created, never written."""
    from storage import StudyDatabase

    return StudyDatabase(storage, create=False)


def _check_study(study: str) -> None:
    from search.validation import check_study_name

    check_study_name(study, "STUDY")


def _run_command(
    args: dict[str, Any],
    *,
    progress: ProgressMode,
    fmt: Format,
    debug: bool,
    resume_only: bool,
) -> None:
    def body() -> None:
        _check_run_args(args, resume_only=resume_only)
        from search.objectives import front_rows, trial_figure
        from search.output import to_json, trial_dict
        from search.progress import make_observer
        from search.service import RunRequest, run_search

        request = RunRequest(**args, resume_only=resume_only)
        observer = make_observer(progress.value)
        mode = type(observer).__name__
        shown = "log" if mode == "LogObserver" else "bar" if mode == "RichObserver" else "off"
        try:
            summary = run_search(request, observer, hard_abort=True, progress=shown)
        except KeyboardInterrupt:
            observer.close()
            _interrupted(request)
            raise
        finally:
            observer.close()
        if fmt is Format.json:
            _echo(
                to_json(
                    {
                        "study": summary.study,
                        "storage": summary.storage,
                        "target": summary.target,
                        "finished": summary.finished,
                        "ran": summary.ran,
                        "seconds": round(summary.seconds, 2),
                        "counts": summary.counts,
                        "changed": list(summary.changed),
                        "best": trial_dict(summary.best) if summary.best else None,
                        **(
                            {
                                "objectives": list(summary.objectives),
                                "front": front_rows(summary.front, summary.objectives),
                            }
                            if len(summary.objectives) > 1
                            else {}
                        ),
                    }
                )
            )
            return
        best = summary.best
        if shown == "off":  # the progress display said it at the start otherwise
            for line in summary.changed:
                _echo(f"study {summary.study}: {line}")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
        _echo(
            f"study {summary.study}: {summary.finished}/{summary.target} trials finished "
            f"({counts}); this run: {summary.ran} trials in {summary.seconds:.1f} s"
        )
        if len(summary.objectives) > 1:
            from search.output import value_text

            _echo(
                f"front ({', '.join(summary.objectives)}): {len(summary.front)} non-dominated "
                f"trials (rnnsearch best {summary.study} --pareto lists them)"
            )
            for t in summary.front:
                figures = ", ".join(
                    f"{n} {value_text(trial_figure(t, n))}" for n in summary.objectives
                )
                _echo(f"  trial {t.number}: {figures}")
        elif best is not None:
            from search.output import params_text

            params = params_text(best.params)
            _echo(f"best: trial {best.number}, val_accuracy {best.value:.4f}, {params}")
        _echo(f"storage: {summary.storage}")

    guarded(body, debug)


def _interrupted(request: Any) -> None:
    """After Ctrl-C: what finished, the best so far and the command that continues (stderr)."""
    import shlex

    from search.output import params_text
    from search.progress import WORKER_INDEX_VAR
    from storage import FINISHED_STATES, StudyDatabase

    if os.environ.get(WORKER_INDEX_VAR):  # a worker of `run --workers N`: its parent says it
        return
    try:
        db = StudyDatabase(request.storage, create=False)
    except Exception:  # noqa: BLE001 - nothing was created yet: nothing to say
        return
    try:
        config = db.study_config(request.study)
        if config is None:
            return
        counts = db.state_counts(request.study)
        finished = sum(counts.get(s, 0) for s in FINISHED_STATES)
        shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
        typer.echo(
            f"rnnsearch: study {request.study}: {finished}/{config.target_trials} trials "
            f"finished ({shown or 'none yet'})",
            err=True,
        )
        best = db.best(request.study, top=1)
        if best:
            typer.echo(
                f"rnnsearch: best so far: trial {best[0].number}, val_accuracy "
                f"{best[0].value:.4f}, {params_text(best[0].params)}",
                err=True,
            )
        command = ["rnnsearch", "resume", request.study]
        if request.storage is not None:
            command += ["--storage", db.display_url]
        typer.echo(f"rnnsearch: continue with: {shlex.join(command)}", err=True)
    except Exception:  # noqa: BLE001 - a summary must never hide the interruption itself
        return
    finally:
        db.dispose()


@app.command()
def best(
    study: StudyArg,
    top: Annotated[
        int | None, typer.Option("--top", "-k", help="How many trials (default 1).", min=1)
    ] = None,
    with_test: Annotated[
        bool, typer.Option("--with-test", help="Show test metrics of retrained trials.")
    ] = False,
    pareto: Annotated[
        bool,
        typer.Option(
            "--pareto",
            help="The non-dominated trials (Pareto front) in the study's objectives, or in "
            "--objectives.",
        ),
    ] = False,
    objectives: Annotated[
        str | None,
        typer.Option(
            "--objectives",
            help="With --pareto: judge the front on these (e.g. val_accuracy,params), whatever "
            "the study was run with.",
            show_default=False,
        ),
    ] = None,
    where: WhereOpt = None,
    storage: StorageOpt = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """The best finished trials: rank, trial, value, params, epochs trained, duration."""

    def body() -> None:
        from search.errors import UsageError
        from search.output import render_trials
        from search.validation import check_count
        from storage.filters import where_filter

        _check_study(study)
        check_count("--top", top)
        if objectives is not None and not pareto:
            raise UsageError(f"--objectives {objectives}: applies to best --pareto only")
        names = None
        if objectives is not None:
            from search.objectives import parse_objectives

            names = parse_objectives(objectives)
        db = _open_for_reading(storage)
        keep = where_filter(db, study, where) if where is not None else None
        if pareto:
            from search.objectives import front_rows, pareto_trials
            from search.output import render_front

            used, front = pareto_trials(db, study, names, keep)
            rows = front_rows(front[:top] if top is not None else front, used)
            _echo(render_front(rows, used, fmt.value))
            return
        rows = db.best(study, top=top or 1, predicate=keep)
        _echo(render_trials(rows, fmt.value, ranked=True, with_test=with_test))
        if not rows:
            counts = db.state_counts(study)
            shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "no trials"
            if where is not None:
                typer.echo(f"rnnsearch: no finished trial of {study} matches --where", err=True)
                return
            typer.echo(
                f"rnnsearch: study {study} has no finished trial yet ({shown}); "
                f"`rnnsearch trials {study}` lists them",
                err=True,
            )
            raise typer.Exit(EXIT_FAILURE)

    guarded(body, debug)


@app.command()
def trials(
    study: StudyArg,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Only trials in this state (complete, pruned, failed, running, interrupted)."
        ),
    ] = None,
    where: WhereOpt = None,
    storage: StorageOpt = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Every trial of a study, in trial order."""

    def body() -> None:
        from search.errors import UsageError
        from search.output import render_trials
        from storage import TRIAL_STATES

        _check_study(study)
        for s in state or []:
            if s not in TRIAL_STATES:
                raise UsageError(f"--state {s!r}: expected one of {', '.join(TRIAL_STATES)}")
        db = _open_for_reading(storage)
        rows = _as_far_as_known(db, db.trials(study, state or None))
        if where is not None:
            from storage.filters import where_filter

            keep = where_filter(db, study, where, rows)
            rows = [t for t in rows if keep(t.config or t.params)]
        _echo(render_trials(rows, fmt.value))

    guarded(body, debug)


def _as_far_as_known(db: Any, rows: list[Any]) -> list[Any]:
    """A running trial's value so far (its best recorded epoch), and a waiting trial's queued
    parameters (Optuna holds them until the trial starts), instead of blanks."""
    import dataclasses

    out = []
    for t in rows:
        if t.state == "running" and t.value is None:
            scored = [e.val_accuracy for e in db.epochs(t.trial_id) if e.val_accuracy is not None]
            if scored:
                t = dataclasses.replace(t, value=max(scored))
        elif t.state == "waiting" and not t.params:
            fixed = db.optuna_storage.get_trial(t.trial_id).system_attrs.get("fixed_params")
            if fixed:
                t = dataclasses.replace(t, params=dict(sorted(fixed.items())))
        out.append(t)
    return out


@app.command()
def studies(
    storage: StorageOpt = None, fmt: FormatOpt = Format.table, debug: DebugOpt = False
) -> None:
    """Every study in the database: engine, space, data, trials per state, best value."""

    def body() -> None:
        from search.output import render_studies

        db = _open_for_reading(storage)
        _echo(render_studies(db.studies(), fmt.value))

    guarded(body, debug)


@app.command()
def report(
    study: StudyArg,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder for index.html, the PNGs and report.json.")
    ] = "report",
    top: Annotated[
        int, typer.Option("--top", "-k", min=1, help="Learning curves of this many best trials.")
    ] = 5,
    storage: StorageOpt = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Compare cells x direction x maxlen; learning curves, history, importances (PNG + HTML)."""

    def body() -> None:
        from pathlib import Path

        from search.errors import UsageError
        from search.output import csv_text, to_json
        from search.report import COMPARISON_COLUMNS, build_report, comparison_table
        from search.validation import check_count

        _check_study(study)
        check_count("--top", top)
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"--out {out}: expected a folder for the report, got an existing file")
        db = _open_for_reading(storage)
        rep = build_report(db, study, Path(out), top=top)
        rows = [g.cells() for g in rep.groups]
        if fmt is Format.json:
            _echo(to_json(rep.to_dict()))
            return
        if fmt is Format.csv:
            _echo(csv_text(COMPARISON_COLUMNS, rows))
            return
        _echo(comparison_table(rep.groups))
        for note in rep.notes:
            _echo(f"note: {note}")
        _echo(f"report: {rep.html} ({len(rep.figures)} figures in {rep.out_dir})")

    guarded(body, debug)


WordIndexOpt = Annotated[
    str | None,
    typer.Option(
        "--word-index",
        help="Studies on Keras' IMDB file: its word index (imdb_word_index.json), so that the "
        "saved model reads text. Default: the one beside the data file, else Keras' cached copy.",
        show_default=False,
    ),
]


@app.command()
def retrain(
    study: StudyArg,
    trial: Annotated[
        int | None, typer.Option("--trial", "-t", help="Trial number (default: the best).")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", "-e", min=1, help="Epochs (default: the trial's best epoch)."),
    ] = None,
    save: Annotated[
        str | None,
        typer.Option(
            "--save",
            help="Model file (.keras). Default: models/trial-N.keras in the study's artefact "
            "folder.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Train on a stratified slice of N training examples (default: all)."),
    ] = None,
    word_index: WordIndexOpt = None,
    storage: StorageOpt = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Train a trial's configuration on the full training set, test it, save the model.

    The saved model takes raw input (text, or raw numeric sequences; see `rnnsearch predict`).
    """

    def body() -> None:
        from search.errors import UsageError
        from search.output import to_json
        from search.retrain import check_retrainable
        from search.retrain import retrain as do_retrain
        from search.validation import check_count, check_model_file
        from storage import StudyDatabase

        _check_study(study)
        check_count("--epochs", epochs)
        check_count("--limit", limit)
        if trial is not None and trial < 0:
            raise UsageError(f"--trial {trial}: expected a trial number, 0 or more")
        if save is not None:
            check_model_file("--save", save)
        # The study and trial are checked on a read-only connection first: opening for writing
        # mends the schema (adds rnnsearch's tables), which a refused retrain must not do.
        reader = StudyDatabase(storage, create=False, read_only=True)
        try:
            check_retrainable(reader, study, trial)
        finally:
            reader.dispose()
        # Then records the test metrics: opened writable, never created.
        db = StudyDatabase(storage, create=False, read_only=False)
        res = do_retrain(
            db, study, trial=trial, epochs=epochs, save=save, limit=limit, word_index=word_index
        )
        if fmt is Format.json:
            _echo(to_json(res.to_dict()))
            return
        _echo(
            f"trial {res.trial}: trained on {res.train_examples} examples for {res.epochs} "
            f"epochs in {res.seconds:.1f} s; test_accuracy {res.test_accuracy:.4f}, "
            f"test_loss {res.test_loss:.4f} on {res.test_examples} test examples"
        )
        _echo(f"saved: {res.saved} (input: {res.input}; classes: {', '.join(res.classes or [])})")

    guarded(body, debug)


@app.command()
def delete(
    study: StudyArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even while trials are running (a run on another machine, say).",
        ),
    ] = False,
    storage: StorageOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Delete a study: its trials, rnnsearch's rows and the files it recorded creating."""

    def body() -> None:
        from search.errors import SearchError, UsageError
        from search.service import delete_study
        from search.trials import running_trials
        from storage import StudyDatabase

        _check_study(study)
        # Read and ask on a read-only connection: opening for writing mends the schema (missing
        # tables are created), which a refused delete must not do.
        reader = StudyDatabase(storage, create=False, read_only=True)
        try:
            trials = len(reader.trials(study))
            live = running_trials(reader, study, live=True)
            shown = reader.display_url
        finally:
            reader.dispose()
        if live and not force:
            t = live[0]
            where = f"process {t.extra.get('pid', '?')} on {t.extra.get('host', '?')}"
            raise UsageError(
                f"study {study!r} has {len(live)} trial(s) running (trial {t.number}, {where}); "
                "stop that run first, or pass --force to delete the study under it"
            )
        if not yes:
            try:
                sure = typer.confirm(
                    f"delete study {study!r} ({trials} trials) from {shown}?",
                    default=False,
                    err=True,
                )
            except typer.Abort:  # end of input or Ctrl-C at the prompt
                sure = False
            if not sure:
                raise SearchError(f"study {study!r}: not deleted (answer y, or pass --yes)")
        db = StudyDatabase(storage, create=False, read_only=False)
        try:
            removed = delete_study(db, study)
        finally:
            db.dispose()
        _echo(f"deleted study {study}: {trials} trials, {removed} recorded files and folders")

    guarded(body, debug)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


@app.command()
def export(
    study: StudyArg,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ExportFormat.csv
    ),
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
    storage: StorageOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Every trial with its parameters, configuration and metrics (per-epoch curves in JSON)."""

    def body() -> None:
        from search.errors import UsageError
        from search.export import export_study

        _check_study(study)
        if out is not None:
            from storage.database import resolve_url, sqlite_path

            _check_out_file(out, {"the study database": sqlite_path(resolve_url(storage))})
        db = _open_for_reading(storage)
        text = export_study(db, study, fmt.value)
        if out is None:
            typer.echo(text, nl=False)
            return
        try:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
        typer.echo(f"exported study {study} to {out}", err=True)

    guarded(body, debug)


@app.command("model")
def model_command(
    study: StudyArg,
    save: Annotated[
        str,
        typer.Option("--save", help="Model file to write (.keras).", show_default=False),
    ],
    trial: Annotated[
        int | None, typer.Option("--trial", "-t", help="Trial number (default: the best).")
    ] = None,
    word_index: WordIndexOpt = None,
    storage: StorageOpt = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Save a trial's own trained model (its best epoch's kept checkpoint; no retraining),
    taking raw input like `retrain --save`."""

    def body() -> None:
        from search.errors import UsageError
        from search.output import to_json
        from search.trial_model import save_trial_model

        _check_study(study)
        if trial is not None and trial < 0:
            raise UsageError(f"--trial {trial}: expected a trial number, 0 or more")
        db = _open_for_reading(storage)
        res = save_trial_model(db, study, trial=trial, save=save, word_index=word_index)
        if fmt is Format.json:
            _echo(to_json(res.to_dict()))
            return
        _echo(
            f"trial {res.trial}, epoch {res.epoch}: val_accuracy {res.val_accuracy:.4f} "
            f"(recorded {res.recorded_val_accuracy:.4f}) on {res.validation_examples} validation "
            f"examples; the saved model, each example alone: {res.saved_val_accuracy:.4f}"
        )
        _echo(f"saved: {res.saved} (input: {res.input}; classes: {', '.join(res.classes)})")

    guarded(body, debug)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Model file saved by retrain or model (.keras).")],
    data: Annotated[
        str | None,
        typer.Option(
            help="Examples: any file or folder `run` reads (labels optional in text tables)."
        ),
    ] = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", help="A text to classify (repeatable).")
    ] = None,
    text_col: Annotated[
        str, typer.Option("--text-col", help="Text column of a CSV/JSONL file.")
    ] = "text",
    label_col: Annotated[
        str, typer.Option("--label-col", help="Label column, if the file has one.")
    ] = "label",
    split_col: Annotated[
        str | None, typer.Option("--split-col", help="Split column (default: 'split').")
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="all, train or test: which examples of the file.")
    ] = "all",
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Predict the class of each example: column `predicted` and every class's probability."""

    def body() -> None:
        from search.errors import UsageError
        from search.output import csv_text, table_text, to_json

        if (data is None) == (not text):
            raise UsageError("--data or --text: give one of them (--text may repeat)")
        for n, item in enumerate(text or [], start=1):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:  # undecodable bytes in the argument
                raise UsageError(
                    f"--text number {n}: bytes that are not UTF-8 at character "
                    f"{exc.start + 1}; expected UTF-8 text"
                ) from None
        _check_out_file(out, {"the model": model, "the --data file": data})
        from search import predict as prediction

        saved = prediction.load_saved(model)
        examples = (
            prediction.Examples("text", list(text or []), origin="--text")
            if data is None
            else prediction.read_examples(
                data, text_col=text_col, label_col=label_col, split_col=split_col, split=split
            )
        )
        result = prediction.predict(saved, examples)
        if fmt is Format.json:
            rendered = to_json(result.records())
        else:
            headers, rows = result.rows()
            if fmt is Format.csv:
                rendered = csv_text(headers, rows)
            else:
                probability_columns = headers[-len(result.classes) :]
                rendered = table_text(headers, rows, right={"index", *probability_columns})
        _write_out(rendered, out)
        if result.accuracy is not None and fmt is Format.table:
            typer.echo(
                f"accuracy {result.accuracy:.4f} on {len(examples.items)} labelled examples",
                err=True,
            )

    guarded(body, debug)


@app.command("export-model")
def export_model(
    model: Annotated[str, typer.Argument(help="Model file saved by retrain or model (.keras).")],
    out: Annotated[str, typer.Option("--out", "-o", help="New folder for the SavedModel.")],
    fmt: FormatOpt = Format.table,
    debug: DebugOpt = False,
) -> None:
    """Export a saved model as a TensorFlow SavedModel for TF Serving (endpoint `serve`)."""

    def body() -> None:
        from search.output import to_json
        from search.predict import export_saved_model

        res = export_saved_model(model, out)
        if fmt is Format.json:
            _echo(to_json(res))
            return
        classes = ", ".join(res["classes"])
        _echo(
            f"exported {res['model']} to {res['out']}: endpoint serve takes {res['input']}, "
            f"returns the probabilities of {classes} (assets.extra/classes.json); largest "
            f"difference from the .keras model on a probe batch: {res['max_difference']:.2g}"
        )

    guarded(body, debug)


def _check_out_file(out: str | None, inputs: dict[str, Any] | None = None) -> None:
    """An output file the command may write: in an existing folder, not a folder, and none of
    the command's ``inputs`` (what -> path): writing there would destroy what it reads."""
    from search.errors import UsageError
    from search.validation import check_output_file

    if out is None:
        return
    check_output_file("--out", out)
    for what, path in (inputs or {}).items():
        if path is not None and os.path.realpath(out) == os.path.realpath(path):
            raise UsageError(f"--out {out}: that is {what} itself; expected another file")


def _write_out(text: str, out: str | None) -> None:
    from search.errors import UsageError

    if out is None:
        _echo(text)
        return
    try:
        with open(out, "w", encoding="utf-8", newline="") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror or exc}") from None


@spaces_app.command("list")
def spaces_list(fmt: FormatOpt = Format.table) -> None:
    """The built-in spaces."""
    from search.output import csv_text, table_text, to_json
    from spaces import builtin_names, load_space

    rows = []
    for name in builtin_names():
        sp = load_space(name)
        rows.append([name, len(sp.searched), sp.description])
    if fmt is Format.json:
        _echo(to_json([{"name": r[0], "searched": r[1], "description": r[2]} for r in rows]))
    elif fmt is Format.csv:
        _echo(csv_text(["name", "searched", "description"], rows))
    else:
        _echo(table_text(["name", "searched", "description"], rows))


class SpaceFormat(str, Enum):
    toml = "toml"
    json = "json"


@spaces_app.command("show")
def spaces_show(
    name: Annotated[str, typer.Argument(help="Built-in space name or TOML file.")],
    fmt: Annotated[SpaceFormat, typer.Option("--format", "-f", help="toml or json.")] = (
        SpaceFormat.toml
    ),
    data: Annotated[
        str | None,
        typer.Option(
            help="Show the space fitted to this data, as `run --data` fits it for a new study "
            '(spaces with fit = "data", such as default).',
            show_default=False,
        ),
    ] = None,
    limit: LimitOpt = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    split_col: SplitColOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print a space (a built-in's TOML source, or the validated JSON form); with --data, the
    space fitted to that data."""

    def body() -> None:
        from search.output import to_json
        from spaces import builtin_names, load_space
        from spaces.loader import builtin_text

        sp = load_space(name)
        if data is None and (limit, text_col, label_col, split_col) != (None,) * 4:
            from search.errors import UsageError

            raise UsageError("--limit, --text-col, --label-col and --split-col need --data")
        if data is not None:
            _show_fitted(sp, fmt, data, limit, text_col, label_col, split_col)
        elif fmt is SpaceFormat.json:
            _echo(to_json(sp.to_dict()))
        elif name in builtin_names() and not os.path.exists(name):
            _echo(builtin_text(name).rstrip("\n"))
        else:
            with open(name, encoding="utf-8") as fh:
                _echo(fh.read().rstrip("\n"))

    guarded(body, debug)


def _show_fitted(
    space: Any,
    fmt: SpaceFormat,
    data: str,
    limit: int | None,
    text_col: str | None,
    label_col: str | None,
    split_col: str | None,
) -> None:
    """`spaces show NAME --data FILE`: the space as a new study on that data would store it."""
    from search.data import load_source, normalise_options
    from search.output import to_json
    from search.service import fit_to_source
    from search.validation import check_count
    from spaces.space import space_toml

    check_count("--limit", limit)
    options = normalise_options(
        {"text_col": text_col, "label_col": label_col, "split_col": split_col}
    )
    source = load_source(data, limit=limit, options=options)
    fitted, record = fit_to_source(space, source)
    if fmt is SpaceFormat.json:
        _echo(to_json({**fitted.to_dict(), "fitted_to": record}))
        return
    comments = [f"{space.name} fitted to {data}" + (f" (--limit {limit})" if limit else "")]
    if record is None:
        comments = [f'{space.name} is not fitted to data (no fit = "data"); shown as it is']
    else:
        stats = record["stats"]
        comments.append(
            ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("kind",))
            + f" ({stats['kind']})"
        )
    _echo(space_toml(fitted, comments).rstrip("\n"))


@spaces_app.command("validate")
def spaces_validate(
    file: Annotated[str, typer.Argument(help="Space TOML file or built-in name.")],
) -> None:
    """Check a space without running anything; exit 2 with one line if it is wrong."""

    def body() -> None:
        from spaces import load_space

        sp = load_space(file)
        _echo(f"{file}: ok ({len(sp.dimensions)} dimensions, {len(sp.searched)} searched)")

    guarded(body)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            # Everything is stored by now. The interpreter's shutdown resets Ctrl-C to its default
            # and tears TensorFlow/JAX down for seconds: a second Ctrl-C there would kill the
            # process by SIGINT or leave a traceback. End here instead.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
