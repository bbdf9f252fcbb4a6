"""The ``driftkeeper`` command line. Thin: each command parses flags and calls the library.

Heavy imports happen inside the commands, so ``driftkeeper serve`` can set the environment
(PROMETHEUS_MULTIPROC_DIR, OMP_NUM_THREADS) before numpy, scikit-learn or prometheus-client
are loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import DataError, DriftkeeperError

EXIT_OK, EXIT_DRIFT, EXIT_ERROR, EXIT_INSUFFICIENT = 0, 1, 2, 3


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .model.config import TrainingConfig as D  # defaults live there, not here

    p = sub.add_parser("train", help="train a model version (and make it current)",
                       description="Fit the model, evaluate it on a held-out split, profile "
                       "the reference and write DIR/versions/<id>/ atomically.")
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="model directory")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", choices=("hgb", "rf"), default=D.model,
                        help="hgb: gradient boosting (default); rf: the lab's random forest")
    source.add_argument("--estimator", metavar="MODULE:FACTORY",
                        help="your own scikit-learn regressor or Pipeline: a callable "
                        "(package.module:factory, importable here and in the service) "
                        "returning it unfitted; it is fitted on a DataFrame with the "
                        "table's columns, and called again for every refit (it receives "
                        "schema= and seed= or random_state= if it names them)")
    source.add_argument("--model-file", metavar="PATH",
                        help="a FITTED regressor or Pipeline saved with joblib/pickle, "
                        "trained by you on a DataFrame with the table's columns; it is "
                        "evaluated on the held-out split of --data, not refitted. "
                        "Loading a pickle runs code from the file: give only a file you "
                        "trust")
    p.add_argument("--data", metavar="CSV", help="base training data: any table with "
                   "--target, else one with the diamonds columns (default: the shipped "
                   "diamonds table)")
    table = p.add_argument_group(
        "training on any table", "With --data and --target the feature schema is inferred "
        "from the CSV (every other column is a feature; numbers are numerical, text is "
        "categorical; bounds: the range widened by 10 ranges each side) and stored with "
        "the version.")
    table.add_argument("--target", metavar="COLUMN", help="the column to predict")
    table.add_argument("--task", choices=("regression", "classification"),
                       help="default: regression for a numeric target with more than 20 "
                       "distinct values, else classification (binary only for now)")
    table.add_argument("--categorical", nargs="+", action="extend", default=[],
                       metavar="COLUMN", help="numeric columns that are categories (codes)")
    table.add_argument("--drop", nargs="+", action="extend", default=[], metavar="COLUMN",
                       help="columns that are not features (identifiers, free text, dates)")
    table.add_argument("--schema", type=Path, metavar="FILE",
                       help="YAML declaring what inference cannot know (target, task, drop, "
                       "and per column kind, levels in order, exclusive_minimum, maximum, "
                       "description); flags win over it")
    p.add_argument("--feedback", metavar="DIR", help="feedback store to learn from "
                   "(e.g. DIR/feedback of a running service)")
    p.add_argument("--feedback-since", type=float, metavar="UNIX_TIME",
                   help="only feedback labelled at or after this time")
    p.add_argument("--feedback-until", type=float, metavar="UNIX_TIME",
                   help="only feedback labelled before this time")
    p.add_argument("--feedback-rows", type=int, default=D.feedback_rows, metavar="N",
                   help=f"newest labelled rows to use (default {D.feedback_rows})")
    p.add_argument("--min-feedback-rows", type=int, default=D.min_feedback_rows, metavar="N",
                   help=f"fewer feedback rows than this are ignored (default "
                   f"{D.min_feedback_rows})")
    p.add_argument("--feedback-share", type=float, default=D.feedback_share, metavar="F",
                   help=f"share of sample weight carried by feedback rows (default "
                   f"{D.feedback_share})")
    p.add_argument("--no-base", action="store_true", help="train on feedback rows only")
    p.add_argument("--strategy", choices=("auto", "refit", "recalibrate"), default=D.strategy,
                   help="with feedback: refit from scratch, recalibrate the current model on "
                   "recent labels, or try both and keep the better on held-out rows (default)")
    p.add_argument("--seed", type=int, default=D.seed, help=f"split and model seed (default "
                   f"{D.seed})")
    p.add_argument("--no-promote", action="store_true",
                   help="write the version but leave `current` where it is")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when DIR already has a current model (a pod's init "
                   "step: train the first model once)")
    p.add_argument("--keep-data", action="store_true",
                   help="copy --data into DIR/data/ and train from the copy: later retrains "
                   "(a Kubernetes Job mounts only the model volume) find the base table there")


def _cmd_train(args: argparse.Namespace) -> int:
    if args.keep_data and not args.data:
        raise DriftkeeperError("--keep-data keeps the table given with --data: pass it")
    return _unless_serving(args.output, "train", args.if_empty, lambda: _train(args))


def _unless_serving(output: Path, verb: str, if_empty: bool, work: Callable[[], int]) -> int:
    """``work()``, or (``if_empty``) nothing when ``output`` already serves a model. The
    replicas' init containers start together on one volume: one works, the rest wait for
    it under the store's first-model lock and find its model."""
    from .model.store import ModelStore

    if not if_empty:
        return work()
    store = ModelStore(output)
    with store.first_model_lock():
        current = store.current_version()
        if current is not None:
            print(f"{output} already serves {current}; nothing to {verb}")
            return EXIT_OK
        return work()


def _train(args: argparse.Namespace) -> int:
    from .model.store import ModelStore
    from .model.train import TrainingConfig, describe_metrics, train

    if args.keep_data:
        from .model.base_table import keep_table

        kept = keep_table(args.output, args.data)
        if not args.json:
            print(f"base table kept as {kept} (retrains learn from it)")
        args.data = str(kept)
    schema = _inferred_schema(args)
    config = TrainingConfig(model=args.model, estimator=args.estimator,
                            model_file=args.model_file, seed=args.seed, data=args.data,
                            include_base=not args.no_base, feedback_dir=args.feedback,
                            feedback_since=args.feedback_since,
                            feedback_until=args.feedback_until,
                            feedback_rows=args.feedback_rows,
                            min_feedback_rows=args.min_feedback_rows,
                            feedback_share=args.feedback_share, strategy=args.strategy,
                            promote=not args.no_promote)
    try:
        result = train(args.output, config) if schema is None else train(args.output, config,
                                                                         schema=schema)
    except DataError as exc:
        if args.data and schema is None and "missing column" in str(exc):
            raise DataError(f"{exc} (without --target, --data must have the diamonds "
                            f"columns; --target COLUMN trains on any table)") from None
        raise
    from .drift.segments import MAX_SEGMENTS, capped

    bundle = ModelStore(args.output).load(result.version, with_estimator=False)
    segments = bundle.profile.segments
    pooled = capped(segments.layout) if segments else {}
    out = {"version": result.version, "promoted": result.promoted, "path": str(result.path),
           "metrics": result.metrics, "schema": bundle.schema.to_dict(),
           "segments_pooled": pooled}
    if args.json:
        print(json.dumps(out))
    else:
        m = result.metrics
        print(f"trained {result.version} -> {result.path}"
              f"{' (current)' if result.promoted else ' (not promoted)'}\n"
              f"  held-out {describe_metrics(m)}  "
              f"({m['holdout_rows']} rows), model {m['model_bytes'] / 1e6:.2f} MB")
        for name, n in pooled.items():  # where concept drift lives: bounded segments
            print(f"  segments of {name}: its {MAX_SEGMENTS - 1} most frequent levels, and "
                  f"{n} rare levels pooled into one \"other\"")
    return EXIT_OK


def _inferred_schema(args: argparse.Namespace) -> Any:
    """The schema inferred from --data when --target (or a flag describing the table) is
    given, printed unless --json; None for the diamonds schema."""
    if not (args.target or args.schema or args.task or args.categorical or args.drop):
        return None
    if not args.data:
        raise DriftkeeperError("--target, --task, --categorical, --drop and --schema "
                               "describe a table: pass it with --data CSV")
    from .inference import describe, infer_from_csv

    schema = infer_from_csv(args.data, args.target, task=args.task,
                            categorical=args.categorical, drop=args.drop,
                            schema_file=args.schema)
    if not args.json:
        print(f"schema inferred from {args.data} ({len(schema.features)} features):",
              *describe(schema), sep="\n", flush=True)
    return schema


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="one retrain under a DriftPolicy: train, judge, promote",
                       description="Train a candidate on the labels since --since (the newest "
                       "promotion.evaluationRows kept out), judge it against the serving model "
                       "on those held-out labels, and promote it only if it is better and "
                       "`current` still points at the model it was judged against. Prints one "
                       "JSON outcome. Exit codes: 0 promoted or rejected, 2 failed.")
    p.add_argument("--model-dir", required=True, type=Path, metavar="DIR")
    p.add_argument("--policy", required=True, type=Path, metavar="FILE",
                   help="DriftPolicy with the retraining and promotion settings")
    p.add_argument("--since", type=float, metavar="UNIX_TIME",
                   help="labels at or after this time are fresh (default: after the newest "
                   "label the serving model trained on)")
    p.add_argument("--data", metavar="CSV", help="base training data (default: the table "
                   "the serving version was trained on; the shipped diamonds table if none)")
    p.add_argument("--termination-log", type=Path, metavar="FILE",
                   help="also write the outcome here (a Kubernetes Job passes "
                   "/dev/termination-log)")
    p.add_argument("--keep-versions", type=int, metavar="N",
                   help="model versions to keep afterwards (default: the policy's "
                   "spec.retraining.keepVersions); the serving version and the one it "
                   "replaced are always kept")


def _cmd_retrain(args: argparse.Namespace) -> int:
    from .model.retrain import FAILED, RetrainOutcome, retrain
    from .policy import load_policy

    if args.keep_versions is not None and args.keep_versions < 2:
        raise DriftkeeperError(f"--keep-versions must be at least 2 (the serving version and "
                               f"the one it replaced), got {args.keep_versions}")
    try:
        outcome = retrain(args.model_dir, load_policy(args.policy), since=args.since,
                          data=args.data, keep_versions=args.keep_versions)
    except Exception as exc:  # the boundary: whatever broke, say so in the outcome
        logging.getLogger("driftkeeper.retrain").exception("retrain failed")
        outcome = RetrainOutcome(FAILED, f"{type(exc).__name__}: {exc}")
    text = outcome.to_json()
    print(text, flush=True)
    if args.termination_log is not None:
        with open(args.termination_log, "w") as fh:  # a plain file the kubelet reads once
            fh.write(text)
    return EXIT_ERROR if outcome.outcome == FAILED else EXIT_OK


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="serve a model trained elsewhere (a model directory)",
                       description="Copy a model directory's current version (or --version) "
                       "into DIR as a new version and make it current: checksums, profile "
                       "and estimator are checked with this installation first. The chart's "
                       "init container runs it to serve a model you trained yourself.")
    p.add_argument("--from", dest="source", required=True, type=Path, metavar="SOURCE",
                   help="the model directory to import (`driftkeeper train --output SOURCE`)")
    p.add_argument("--output", required=True, type=Path, metavar="DIR",
                   help="model directory to serve from")
    p.add_argument("--version", dest="source_version", metavar="VERSION",
                   help="which of SOURCE's versions (default: its current one)")
    p.add_argument("--data", metavar="CSV", help="the base table retrains learn from, kept in "
                   "DIR/data/ (default: the table the version was trained on, if that file "
                   "exists here)")
    p.add_argument("--no-promote", action="store_true",
                   help="write the version but leave `current` where it is")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when DIR already has a current model (a pod's init step)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _cmd_import(args: argparse.Namespace) -> int:
    from .model.importing import import_model

    def work() -> int:
        result = import_model(args.source, args.output, version=args.source_version,
                              data=args.data, promote=not args.no_promote)
        if args.json:
            print(json.dumps(dataclasses.asdict(result)))
            return EXIT_OK
        print(f"imported {args.source} {result.source_version} -> {args.output} "
              f"{result.version}{' (current)' if result.promoted else ' (not promoted)'}")
        print(f"  base table for retrains: {result.base_table}" if result.base_table else
              "  base table for retrains: the shipped diamonds table, if the schema is "
              "diamonds'; for any other table pass --data CSV, or retrain on labels only "
              "(spec.retraining.trainingData.includeBase: false)")
        return EXIT_OK

    return _unless_serving(args.output, "import", args.if_empty, work)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the current model under gunicorn",
                       description="Predictions, feedback and drift monitoring over HTTP. "
                       "Every flag also reads DRIFTKEEPER_<FLAG> from the environment.")
    env = _env_defaults()
    p.add_argument("--model-dir", type=Path, default=env.get("model_dir"), metavar="DIR",
                   required="model_dir" not in env)
    p.add_argument("--host", default=env.get("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("port", 8080)))
    p.add_argument("--workers", type=int, default=int(env.get("workers", 2)))
    p.add_argument("--threads", type=int, default=int(env.get("threads", 2)),
                   help="threads per worker (default 2)")
    p.add_argument("--policy", type=Path, default=env.get("policy"), metavar="FILE",
                   help="DriftPolicy file with thresholds and windows; re-read on change")
    p.add_argument("--state-dir", type=Path, default=env.get("state_dir"), metavar="DIR",
                   help="scratch space for metrics and windows (default: a temporary dir)")
    p.add_argument("--max-rows", type=int, default=int(env.get("max_rows", 10_000)),
                   help="rows per request (default 10000)")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--monitor", choices=("internal", "external"),
                   default=env.get("monitor", "internal"),
                   help="internal (default): run and restart the monitor process (counting, "
                   "drift evaluation) beside the workers; external: another process or "
                   "container runs `driftkeeper monitor` on the same --state-dir")


def _env_defaults() -> dict[str, str]:
    from .serving.config import env_defaults

    return env_defaults()


def _cmd_serve(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="driftkeeper-state-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(state_dir / "prometheus")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .serving.config import ServiceConfig
    from .serving.server import serve

    config = ServiceConfig(model_dir=args.model_dir, state_dir=state_dir, policy=args.policy,
                           host=args.host, port=args.port, workers=args.workers,
                           threads=args.threads, max_rows=args.max_rows,
                           access_log=args.access_log, monitor=args.monitor)
    serve(config)
    return EXIT_OK


def _add_monitor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="count and evaluate a service's windows (the pod's "
                       "monitor process)",
                       description="Reads the rows every `serve` worker appends under "
                       "--state-dir, keeps the window counters and evaluates drift against "
                       "the serving version's reference; `serve` reads what it publishes. "
                       "`serve` runs it itself unless started with --monitor external. "
                       "Every flag also reads DRIFTKEEPER_<FLAG> from the environment.")
    env = _env_defaults()
    p.add_argument("--model-dir", type=Path, default=env.get("model_dir"), metavar="DIR",
                   required="model_dir" not in env)
    p.add_argument("--state-dir", type=Path, default=env.get("state_dir"), metavar="DIR",
                   required="state_dir" not in env, help="the serving workers' --state-dir")
    p.add_argument("--policy", type=Path, default=env.get("policy"), metavar="FILE",
                   help="DriftPolicy file with thresholds and windows; re-read on change")
    p.add_argument("--reload-interval", type=float,
                   default=float(env.get("reload_interval", 1.0)), metavar="SECONDS",
                   help="seconds between looks at new rows, models and the policy (default 1)")
    p.add_argument("--health-host", default="127.0.0.1",
                   help="address of the /healthz endpoint (0.0.0.0 in a pod)")
    p.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="serve /healthz (200 while the loop ticks cleanly) on this port")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="exit when this process (the supervising `serve`) is gone")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="lower the monitor's CPU priority by N (`serve` uses 10: where "
                   "monitor and workers share cores, requests come first; a pod's separate "
                   "CPU limits do the same)")


def _cmd_monitor(args: argparse.Namespace) -> int:
    import signal
    import threading

    if args.parent_pid is not None:
        _die_with_parent(args.parent_pid)
        drop_inherited_sockets()
    if args.nice < 0:
        raise DriftkeeperError("--nice: must be 0 or more (the monitor never outranks serving)")
    if args.nice:
        os.nice(args.nice)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .serving import multiproc

    multiproc.use_directory(args.state_dir / "prometheus", multiproc.MONITOR_IDENTITY)
    from threadpoolctl import threadpool_limits

    from .serving import monitor_process
    from .serving.config import ServiceConfig

    config = ServiceConfig(model_dir=args.model_dir, state_dir=args.state_dir,
                           policy=args.policy, reload_interval=args.reload_interval)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threadpool_limits(1)  # one core's worth, like a worker; its container sets the limit
    monitor_process.run(config, stop, args.health_host, args.health_port)
    return EXIT_OK


def drop_inherited_sockets() -> None:
    """Close the sockets a supervising ``serve`` left open in this process: gunicorn marks
    its listeners inheritable (for its re-exec), and a monitor holding one would keep the
    port bound, accepting nothing, if the master died first."""
    import stat

    for entry in Path("/proc/self/fd").iterdir():
        fd = int(entry.name)
        if fd > 2:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.close(fd)


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the supervising process dies, and exit now if it already has."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        raise DriftkeeperError(f"the supervising process {parent} is gone")


def _add_drift(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drift", help="judge a CSV for drift; exit 1 on drift",
                       description="With --reference: data drift of CURRENT against "
                       "REFERENCE, per feature and overall. With --model DIR and no "
                       "--reference: every kind against the model's own reference, as the "
                       "service judges its traffic (data, prediction and estimated "
                       "performance; concept drift too when CURRENT holds the target), under "
                       "--policy FILE or the default DriftPolicy. Exit codes: 0 no drift, "
                       "1 drift, 2 error, 3 too few rows.")
    p.add_argument("--reference", metavar="CSV",
                   help="the rows to compare against (default with --model: the model's "
                   "reference)")
    p.add_argument("--current", required=True, metavar="CSV")
    p.add_argument("--policy", type=Path, metavar="FILE",
                   help="with --model and no --reference: the DriftPolicy whose thresholds "
                   "and false-alarm budget judge CURRENT (default: the defaults)")
    p.add_argument("--json", action="store_true", help="print the drift report as JSON")
    p.add_argument("--method", action="append", default=[], metavar="[FEATURE=]NAME",
                   help="statistic for every feature it applies to, or for one feature; "
                   "repeatable (psi, ks, wasserstein, jensenshannon, chisquare)")
    p.add_argument("--threshold", action="append", default=[], metavar="[FEATURE=]VALUE",
                   help="'auto' (default: calibrated from the reference) or a number")
    p.add_argument("--rule", choices=("any", "share", "mean"), default="any")
    p.add_argument("--min-samples", type=int, default=200)
    p.add_argument("--false-alarm-rate", type=float, default=0.01)
    p.add_argument("--exact", action="store_true",
                   help="exact statistics on raw values (default: binned, as the service)")
    p.add_argument("--seed", type=int, default=0, help="calibration seed")
    columns = p.add_argument_group(
        "which columns are features", "Default: the diamonds columns. --model takes the "
        "schema a trained model serves; --target infers one from REFERENCE as `train` does.")
    columns.add_argument("--model", type=Path, metavar="DIR",
                         help="model directory whose current version's schema to use")
    columns.add_argument("--target", metavar="COLUMN", help="the reference's target column")
    columns.add_argument("--categorical", nargs="+", action="extend", default=[],
                         metavar="COLUMN", help="numeric columns that are categories")
    columns.add_argument("--drop", nargs="+", action="extend", default=[], metavar="COLUMN",
                         help="columns that are not features")
    columns.add_argument("--schema", type=Path, metavar="FILE", help="a YAML schema file")
    p.set_defaults(reference_only={name: p.get_default(name) for name in REFERENCE_ONLY})


def _drift_schema(args: argparse.Namespace) -> Any:
    """The features to compare: a model's, one inferred from the reference, or diamonds'."""
    describing = args.target or args.schema or args.categorical or args.drop
    if args.model is not None:
        if describing:
            raise DriftkeeperError("--model takes the model's schema; --target, "
                                   "--categorical, --drop and --schema infer one: pass either")
        from .model.store import ModelStore

        return ModelStore(args.model).load(with_estimator=False).schema
    if not describing:
        from .schema import DIAMONDS_SCHEMA

        return DIAMONDS_SCHEMA
    from .inference import infer_from_csv

    return infer_from_csv(args.reference, args.target, categorical=args.categorical,
                          drop=args.drop, schema_file=args.schema)


def _split_assignments(values: list[str]) -> tuple[str | None, dict[str, str]]:
    default, per_feature = None, {}
    for v in values:
        if "=" in v:
            k, _, val = v.partition("=")
            per_feature[k.strip()] = val.strip()
        else:
            default = v.strip()
    return default, per_feature


REFERENCE_ONLY = ("method", "threshold", "rule", "min_samples", "false_alarm_rate", "exact",
                  "seed", "target", "schema", "categorical", "drop")
"""``drift`` flags that set up a comparison with --reference; against the model's own
reference the policy sets all of them."""


def _cmd_drift(args: argparse.Namespace) -> int:
    from .drift.cli import compare_files

    if args.reference is None:
        return _cmd_drift_model(args)
    if args.policy is not None:
        raise DriftkeeperError("--policy judges against the model's own reference: pass "
                               "--model DIR without --reference")

    default_method, methods = _split_assignments(args.method)
    default_threshold, thresholds = _split_assignments(args.threshold)
    schema = _drift_schema(args)
    try:
        report = compare_files(args.reference, args.current, default_method=default_method,
                               methods=methods, default_threshold=default_threshold,
                               thresholds=thresholds, rule=args.rule,
                               min_samples=args.min_samples,
                               false_alarm_rate=args.false_alarm_rate, exact=args.exact,
                               seed=args.seed, schema=schema)
    except DataError as exc:
        if args.model is None and not args.target and "missing column" in str(exc):
            raise DataError(f"{exc} (the default columns are the diamonds'; --model DIR "
                            f"takes a trained model's, --target COLUMN infers them from "
                            f"the reference)") from None
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(_format_data_report(report.to_dict()["data"]))
    if report.data.drift is None:
        return EXIT_INSUFFICIENT
    return EXIT_DRIFT if report.data.drift else EXIT_OK


def _cmd_drift_model(args: argparse.Namespace) -> int:
    """Every kind on a batch against the model's own reference (issue 19 part 5)."""
    if args.model is None:
        raise DriftkeeperError("pass --reference CSV, or --model DIR to judge CURRENT "
                               "against the model's own reference")
    given = [f"--{name.replace('_', '-')}" for name, default in args.reference_only.items()
             if getattr(args, name) != default]
    if given:
        raise DriftkeeperError(f"{', '.join(given)} only apply with --reference; against the "
                               f"model's reference the policy (--policy FILE) sets them")
    from .data import read_current
    from .drift.batch import judge_frame
    from .model.store import ModelStore
    from .policy import policy_or_default
    from .serving.runtime import ServingModel

    bundle = ModelStore(args.model).load()
    policy = policy_or_default(args.policy, bundle.schema)
    frame = read_current(args.current, bundle.schema)
    report, _ = judge_frame(ServingModel.from_bundle(bundle), frame, policy.monitor,
                            time.time())
    verdicts = {"data": report.data.drift}
    for kind in ("prediction", "performance", "concept"):
        verdict = getattr(report, kind)
        if verdict is not None:
            verdicts[kind] = verdict.drift
    drift = any(v is True for v in verdicts.values())
    if args.json:
        doc = {**report.to_dict(), "source": str(args.current), "policy": policy.name,
               "verdicts": verdicts, "drift": drift}
        print(json.dumps(doc, indent=2))
    else:
        print(_format_kinds(report))
        print()
        print(_format_data_report(report.to_dict()["data"]))
    if drift:
        return EXIT_DRIFT
    return EXIT_INSUFFICIENT if report.data.drift is None else EXIT_OK


def _format_kinds(report: Any) -> str:
    """One line per judged kind: its score against its threshold, and the verdict."""
    lines = [f"{'kind':<12} {'score':>8} {'threshold':>10} {'rows':>7}  verdict"]
    rows = [("data", report.data.statistic, report.data.threshold, report.data.samples,
             report.data.drift)]
    for kind in ("prediction", "performance", "concept"):
        v = getattr(report, kind)
        if v is not None:
            rows.append((kind, v.score, v.threshold, v.samples, v.drift))
    for kind, score, threshold, n, drift in rows:
        shown = "-" if score is None else f"{score:.4f}"
        lines.append(f"{kind:<12} {shown:>8} {threshold:>10.4f} {n:>7}  {_verdict_text(drift)}")
    return "\n".join(lines)


def _verdict_text(drift: bool | None) -> str:
    return "insufficient data" if drift is None else "DRIFT" if drift else "ok"


def _format_data_report(data: dict[str, Any]) -> str:
    lines = [f"{'feature':<10} {'method':<14} {'score':>8} {'threshold':>10}  verdict"]
    for name, f in data["features"].items():
        score = "-" if f["score"] is None else f"{f['score']:.4f}"
        extra = ""
        if f.get("unseen"):
            extra += f"  ({f['unseen']} unseen)"
        if f.get("invalid"):
            extra += f"  ({f['invalid']} invalid)"
        lines.append(f"{name:<10} {f['method']:<14} {score:>8} {f['threshold']:>10.4f}  "
                     f"{_verdict_text(f['drift'])}{extra}")
    score = "-" if data["score"] is None else f"{data['score']:.4f}"
    lines.append(f"\ndata drift: {_verdict_text(data['drift'])} (rule {data['rule']}; "
                 f"{len(data['drifted_features'])} of {len(data['features'])} features drifted; "
                 f"mean score {score}; {data['samples']} rows)")
    return "\n".join(lines)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from .simulate.catalog import CATALOG, ROLES

    scenarios = "\n".join(f"  {s.name:<18} {s.summary}" for s in CATALOG.values())
    roles = "\n".join(f"  {text}" for text in ROLES.values())
    p = sub.add_parser("simulate", help="drive a service with scripted drift scenarios",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Send predictions, then labels after --label-delay. The "
                       "service's GET /schema says which columns; on the diamonds table the "
                       "scenarios play the lab's world (carat, cut = Ideal, colours D/E/F "
                       f"25% dearer).\n\nscenarios:\n{scenarios}\n\n{roles}")
    p.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--scenario", required=True, choices=sorted(CATALOG), metavar="NAME")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, metavar="S", help="seconds (default 60)")
    length.add_argument("--requests", type=int, metavar="N", help="number of requests")
    p.add_argument("--label-delay", type=float, default=2.0, metavar="S",
                   help="seconds before a prediction's label is sent (default 2)")
    p.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    p.add_argument("--shift-after", type=float, metavar="S", help="seconds of normal traffic "
                   "before a sudden shift (default: 30%% of the run); the rest of the run "
                   "plays the rest of the scenario")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", metavar="CSV", help="rows to sample, with the served model's "
                   "columns and target (default: the bundled diamonds, if they fit)")
    p.add_argument("--tilt", metavar="FEATURE", help="the numerical feature covariate shifts "
                   "make larger")
    p.add_argument("--mix", metavar="FEATURE=LEVEL", help="the category level category-mix "
                   "makes rarer")
    p.add_argument("--concept", metavar="SEGMENT", help="where the target shifts: "
                   "FEATURE=LEVEL[,LEVEL...] or FEATURE>VALUE")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate.runner import SimulationConfig, simulate
    from .simulate.world import Overrides

    config = SimulationConfig(url=args.url, scenario=args.scenario, rate=args.rate,
                              duration=args.duration, requests=args.requests,
                              label_delay=args.label_delay, batch=args.batch, seed=args.seed,
                              data=args.data, overrides=Overrides(args.tilt, args.mix,
                                                                  args.concept),
                              shift_after=args.shift_after)
    final = simulate(config, on_progress=lambda p: print(p.line(), flush=True))
    if final.errors:
        print(f"{final.errors} requests failed; last: {final.last_error}", file=sys.stderr)
    return EXIT_OK


def _add_operator(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "operator", help="apply DriftPolicies: monitor, retrain, promote",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="On Kubernetes (the default): a Kopf operator that watches DriftPolicy "
        "resources, sums the counters of every ready replica of each policy's model Service, "
        "judges drift, writes the status and events and runs retraining Jobs. It uses the "
        "in-cluster ServiceAccount, or the standard kubeconfig (KUBECONFIG) outside a "
        "cluster.\n\nWith --local: the same decisions on this machine, against one local "
        "service and model directory, retraining in a subprocess.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--namespace", action="append", default=[], metavar="NS",
                       help="watch DriftPolicies in this namespace (repeatable; default: "
                       "the kubeconfig's namespace, else 'default')")
    where.add_argument("--all-namespaces", "-A", action="store_true",
                       help="watch DriftPolicies in every namespace (needs a ClusterRole)")
    where.add_argument("--local", action="store_true",
                       help="run against a local service and model directory instead")
    p.add_argument("--liveness", metavar="URL",
                   help="serve Kopf's liveness probe here, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve the policies' metrics (phase, verdicts, retrains by outcome, "
                   "failure budget) for Prometheus on this port")
    local = p.add_argument_group("with --local")
    local.add_argument("--policy", type=Path, metavar="FILE",
                       help="DriftPolicy YAML (the same file works with kubectl apply)")
    local.add_argument("--service", metavar="URL", help="the service's base URL")
    local.add_argument("--model-dir", type=Path, metavar="DIR")
    local.add_argument("--service-policy", type=Path, metavar="FILE",
                       help="where to write the thresholds the service reads "
                       "(default DIR/service-policy.yaml; pass the same to serve --policy)")
    local.add_argument("--data", metavar="CSV", help="base data for retraining (default: "
                       "the table the serving version was trained on)")
    local.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def _cmd_operator(args: argparse.Namespace) -> int:
    if args.local:
        missing = [f"--{n.replace('_', '-')}" for n in ("policy", "service", "model_dir")
                   if getattr(args, n) is None]
        if missing:
            raise DriftkeeperError(f"--local needs {', '.join(missing)}")
        from .local.driver import DriverConfig, LocalDriver

        driver = LocalDriver(DriverConfig(policy_path=args.policy, service_url=args.service,
                                          model_dir=args.model_dir,
                                          service_policy_path=args.service_policy,
                                          base_data=args.data, metrics_port=args.metrics_port))
        driver.run(duration=args.duration)
        return EXIT_OK
    try:
        from driftkeeper_operator.main import run
    except ImportError as exc:
        raise _extra("kubernetes", "the Kubernetes operator", exc) from exc
    if args.metrics_port:
        os.environ["DRIFTKEEPER_METRICS_PORT"] = str(args.metrics_port)  # OperatorConfig's
    run(args.namespace or [_default_namespace()], args.all_namespaces, args.liveness)
    return EXIT_OK


def _default_namespace() -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's, else 'default'."""
    in_pod = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if in_pod.is_file():
        return in_pod.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts()
        return (context or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: the operator will say so when it logs in
        return "default"


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="an HTML page of reference vs current distributions",
                       description="Per feature: reference vs current distributions and the "
                       "score against its threshold; the concept-drift view (residuals, RMSE "
                       "vs reference); the verdicts. Self-contained HTML plus PNGs beside it.")
    p.add_argument("--model-dir", required=True, type=Path, metavar="DIR")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--current", metavar="CSV", help="rows to check (price optional)")
    source.add_argument("--service", metavar="URL", help="a running service's windows")
    p.add_argument("--policy", type=Path, metavar="FILE",
                   help="DriftPolicy for thresholds (with --current; default settings "
                   "otherwise)")
    p.add_argument("--output", required=True, type=Path, metavar="HTML")


def _extra(extra: str, what: str, exc: ImportError) -> DriftkeeperError:
    return DriftkeeperError(f"{what} needs the '{extra}' extra (pip install "
                            f"'driftkeeper[{extra}]'): {exc}")


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        from .report import report_from_csv, report_from_service
    except ImportError as exc:
        raise _extra("report", "driftkeeper report", exc) from exc

    if args.current:
        path = report_from_csv(args.model_dir, args.current, args.output, args.policy)
    else:
        path = report_from_service(args.model_dir, args.service, args.output)
    print(f"report written to {path}")
    return EXIT_OK


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole loop on this machine, watched live",
                       description="Train a model if there is none, then run the service, "
                       "the local driver and the simulator together; watch drift appear, get "
                       "retrained away and clear. Ends by itself; Ctrl-C stops everything.")
    p.add_argument("--workdir", type=Path, default=Path("models"), metavar="DIR",
                   help="where the base model and the run live (default ./models)")
    p.add_argument("--duration", type=float, default=150.0, metavar="S",
                   help="seconds of traffic (default 150)")
    p.add_argument("--rate", type=float, default=100.0, help="requests per second")
    p.add_argument("--scenario", default="concept", help="simulator scenario (default concept)")
    p.add_argument("--port", type=int, help="service port (default: a free one)")
    p.add_argument("--data", metavar="CSV", help="your own table: the diamonds columns, or "
                   "any table with --target")
    p.add_argument("--seed", type=int, default=0)
    table = p.add_argument_group(
        "your own table", "With --data and --target the first model is trained on the CSV "
        "with an inferred schema (as `train --target` does, printed), the simulator samples "
        "its rows and the scenarios act on its columns.")
    table.add_argument("--target", metavar="COLUMN", help="the column to predict")
    table.add_argument("--categorical", nargs="+", action="extend", default=[],
                       metavar="COLUMN", help="numeric columns that are categories")
    table.add_argument("--drop", nargs="+", action="extend", default=[], metavar="COLUMN",
                       help="columns that are not features")
    table.add_argument("--schema", metavar="FILE", help="a YAML schema file (see train)")


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .local.demo import DemoConfig, run_demo
    except ImportError as exc:
        raise _extra("report", "driftkeeper demo", exc) from exc
    from .simulate.catalog import CATALOG

    if args.scenario not in CATALOG:
        raise DriftkeeperError(f"unknown scenario {args.scenario!r}; one of {list(CATALOG)}")
    run_demo(DemoConfig(workdir=args.workdir, duration=args.duration, rate=args.rate,
                        scenario=args.scenario, port=args.port, data=args.data,
                        seed=args.seed, target=args.target,
                        categorical=tuple(args.categorical), drop=tuple(args.drop),
                        schema_file=args.schema))
    return EXIT_OK


COMMANDS = {"train": (_add_train, _cmd_train), "retrain": (_add_retrain, _cmd_retrain),
            "import": (_add_import, _cmd_import),
            "serve": (_add_serve, _cmd_serve), "monitor": (_add_monitor, _cmd_monitor),
            "drift": (_add_drift, _cmd_drift), "simulate": (_add_simulate, _cmd_simulate),
            "operator": (_add_operator, _cmd_operator), "report": (_add_report, _cmd_report),
            "demo": (_add_demo, _cmd_demo)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftkeeper", description="Drift monitoring and "
                                     "automated retraining for scikit-learn models.")
    parser.add_argument("--version", action="version", version=f"driftkeeper {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return COMMANDS[args.command][1](args)
    except DriftkeeperError as exc:
        print(f"driftkeeper {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
