"""The ``edgec`` command line. Exit codes are documented in :mod:`edgec.errors`."""

from __future__ import annotations

import json
import logging
import os
import sys

import click
import numpy as np

from edgec.cli_types import HostPortType, InputSpecType
from edgec.errors import BadInputError, EdgecError, InputError

logger = logging.getLogger("edgec")


def setup_logging(debug: bool, chatty: bool) -> None:
    """Progress lines (``chatty``) only for a person watching a terminal; CI logs and --json stay quiet."""
    level = logging.DEBUG if debug else (logging.INFO if chatty else logging.WARNING)
    logging.basicConfig(level=level, format="edgec: %(message)s", stream=sys.stderr)
    for noisy in ("tvm", "onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.DEBUG)


def _emit(data: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def _load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"inputs file {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise InputError(f"inputs file {path} is not a readable .npz: {err}") from None


def _save_npz(path: str, arrays: dict) -> None:
    import io

    from edgec.artifact import write_atomic

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="edgec")
@click.pass_context
def cli(ctx, debug):
    """edgec: compile neural networks ahead of time for edge devices."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="host", show_default=True, help="Preset name or target JSON file.")
@click.option("-o", "--output", "out", default=None, help="Artifact path [default: MODEL.edgec].")
@click.option("--input", "inputs", type=InputSpecType(), multiple=True, help="Pin an input: NAME:DIMS[:DTYPE].")
@click.option("--quantize", type=click.Choice(["int4"]), default=None, help="Quantize weights.")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Calibration inputs (.npz) for AWQ.")
@click.option("--int4-group", type=click.Choice(["32", "64", "128"]), default=None,
              help="int4 group size along K [default: 128].")
@click.option("--int4-symmetric", is_flag=True, help="int4: symmetric (zero point 8) instead of asymmetric groups.")
@click.option("--int4-embeddings", is_flag=True, help="int4: quantize constant embedding tables (Gather) too.")
@click.option("--int4-skip-lm-head", is_flag=True, help="int4: keep the LM head (the last, widest matmul) float.")
@click.option("--sparse-sample", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Sample inputs (.npz): time both sparse-conv dataflows per layer group (host target).")
@click.option("--layout", type=click.Choice(["auto", "none"]), default="auto", show_default=True)
@click.option("--tuning-db", type=click.Path(file_okay=False), default=None, help="MetaSchedule database.")
@click.option("--arch", default=None, help="CUDA compute capability, e.g. sm_87.")
@click.option("--ndk", type=click.Path(file_okay=False), default=None, help="Android NDK root.")
@click.option("--runtime-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the device's libtvm_runtime.so and libtvm_ffi.so (aarch64 targets).")
@click.option("--verify", is_flag=True, help="Run the artifact against onnxruntime/PyTorch; exit 1 on mismatch.")
@click.option("--dump-ir", type=click.Path(file_okay=False), default=None, help="Write the IR after each phase here.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option("--no-isolate", is_flag=True,
              help="Compile in this process rather than a child process (a crash in TVM then ends edgec).")
@click.pass_context
def compile(ctx, model, target, out, inputs, quantize, calibration, int4_group, int4_symmetric, int4_embeddings,
            int4_skip_lm_head, sparse_sample, layout, tuning_db, arch, ndk, runtime_dir, verify, dump_ir, as_json,
            no_isolate):  # noqa: A001
    """Compile MODEL (.onnx or .pt2) into a deployable artifact."""
    from edgec import compile_job, isolation
    from edgec.frontend import check_model_file
    from edgec.targets import preset_names, resolve

    if calibration and not quantize:
        raise click.UsageError("--calibration applies with --quantize int4")
    int4_flags = [name for name, given in (("--int4-group", int4_group), ("--int4-symmetric", int4_symmetric),
                                           ("--int4-embeddings", int4_embeddings),
                                           ("--int4-skip-lm-head", int4_skip_lm_head)) if given]
    if int4_flags and quantize != "int4":
        raise click.UsageError(f"{', '.join(int4_flags)} appl{'ies' if len(int4_flags) == 1 else 'y'} "
                               "with --quantize int4")
    names = [s.name for s in inputs]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"an input is given twice in {names}", param_hint="--input")
    # refuse a malformed model, wrong --input or unknown target here, before a compiler process starts
    check_model_file(model, {s.name: s for s in inputs})
    if target not in preset_names() and not os.path.exists(target):
        resolve(target)  # raises TargetError with suggestions
    request = {"model": model, "target": target, "out": out or os.path.splitext(os.path.basename(model))[0] + ".edgec",
               "inputs": {s.name: s.to_json() for s in inputs}, "quantize": quantize, "calibration": calibration,
               "int4_group": int(int4_group) if int4_group else None, "int4_symmetric": int4_symmetric,
               "int4_embeddings": int4_embeddings, "int4_lm_head": not int4_skip_lm_head,
               "layout": layout, "tuning_db": tuning_db, "arch": arch, "ndk": ndk, "runtime_dir": runtime_dir,
               "verify": verify, "dump_ir": dump_ir, "sparse_sample": sparse_sample}
    if no_isolate:
        data = compile_job.compile_to_file(request)
    else:
        data = isolation.call("edgec.compile_job:compile_to_file", request, debug=ctx.obj["debug"],
                              chatty=sys.stderr.isatty() and not as_json,
                              writes_into=(os.path.dirname(os.path.abspath(request["out"])),))
    text = data.pop("text")
    _emit(data, as_json, text)


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs_path", required=True, type=click.Path(dir_okay=False), help="Inputs .npz.")
@click.option("-o", "--output", "out", default=None, help="Outputs .npz [default: print a summary].")
@click.option("--emulate", is_flag=True, help="Run an aarch64 artifact under qemu-aarch64.")
@click.option("--rpc-tracker", type=HostPortType(), default=None)
@click.option("--rpc-key", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the outputs' names, shapes and dtypes as JSON.")
def run(artifact, inputs_path, out, emulate, rpc_tracker, rpc_key, as_json):
    """Run ARTIFACT on inputs from an .npz keyed by input name."""
    import edgec

    if (rpc_tracker is None) != (rpc_key is None):
        raise click.UsageError("--rpc-tracker and --rpc-key go together")
    art = edgec.load(artifact)
    feeds = _load_npz(inputs_path)
    if rpc_tracker:
        from edgec.runtime.remote import RemoteRunner

        outputs = RemoteRunner(art, rpc_tracker, rpc_key).run(feeds)
    else:
        outputs = art.run(feeds, emulate=emulate)
    if out:
        _save_npz(out, outputs)
    if as_json:
        summary = {name: {"shape": list(v.shape), "dtype": str(v.dtype)} for name, v in outputs.items()}
        click.echo(json.dumps({"outputs": summary, "written": out}, indent=2))
    elif out:
        click.echo(f"wrote {out}")
    else:
        for name, value in outputs.items():
            click.echo(f"{name}: shape {tuple(value.shape)} {value.dtype} mean {float(np.mean(value)):.6g}")


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs_path", default=None, type=click.Path(dir_okay=False))
@click.option("--runs", default=50, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0))
@click.option("--threads", default=None, type=click.IntRange(1), help="CPU threads (both runtimes).")
@click.option("--against-onnxruntime", "ort_model", default=None, type=click.Path(dir_okay=False))
@click.option("--emulate", is_flag=True, help="Time an aarch64 artifact under qemu-aarch64 (emulated time).")
@click.option("--rpc-tracker", type=HostPortType(), default=None, help="Time on a device through this tracker.")
@click.option("--rpc-key", default=None, help="The device's key at the tracker.")
@click.option("--json", "as_json", is_flag=True)
def bench(artifact, inputs_path, runs, warmup, threads, ort_model, emulate, rpc_tracker, rpc_key, as_json):
    """Time ARTIFACT: median, p10 and p90 latency, optionally against onnxruntime."""
    from edgec.bench_util import bench_artifact

    if (rpc_tracker is None) != (rpc_key is None):
        raise click.UsageError("--rpc-tracker and --rpc-key go together")
    rpc = (rpc_tracker, rpc_key) if rpc_tracker else None
    result = bench_artifact(artifact, inputs_path and _load_npz(inputs_path), runs, warmup, threads, ort_model,
                            emulate=emulate, rpc=rpc)
    lines = [f"edgec        median {result['edgec']['median_ms']:.3f} ms  "
             f"p10 {result['edgec']['p10_ms']:.3f}  p90 {result['edgec']['p90_ms']:.3f}  ({runs} runs)"]
    if "onnxruntime" in result:
        o = result["onnxruntime"]
        lines.append(f"onnxruntime  median {o['median_ms']:.3f} ms  p10 {o['p10_ms']:.3f}  p90 {o['p90_ms']:.3f}")
        lines.append(f"ratio edgec/onnxruntime: {result['ratio']:.2f}x")
    _emit(result, as_json, "\n".join(lines))


@cli.command("rpc-server")
@click.option("--tracker", type=HostPortType(), required=True, help="The RPC tracker to register with.")
@click.option("--key", required=True, help="This device's key at the tracker.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=9090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--port-end", default=9199, show_default=True, type=click.IntRange(1, 65535))
def rpc_server(tracker, key, host, port, port_end):
    """Serve this machine to a TVM RPC tracker, able to run edgec artifacts (under qemu if foreign)."""
    from edgec.runtime.rpc_server import serve

    serve(tracker, key, host, port, port_end)


@cli.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def inspect(artifact, as_json):
    """Show what ARTIFACT holds and what it was built from."""
    import edgec

    art = edgec.load(artifact)
    m = art.manifest

    def sig(specs):
        return ", ".join(f"{s['name']}: {s['dtype']}[{', '.join(map(str, s['shape']))}]" for s in specs)

    text = "\n".join([
        f"artifact   {artifact} (format {m['format_version']}, sha256 {art.sha256()[:16]}…)",
        f"target     {m['preset']} ({m['device']}, {m['arch']})",
        f"built by   edgec {m['edgec_version']}, TVM {m['tvm_version']}",
        f"model      {m['model']['format']} sha256 {m['model']['sha256'][:16]}…",
        f"inputs     {sig(m['inputs'])}",
        f"outputs    {sig(m['outputs'])}",
        f"weights    {len(m.get('weights', []))} tensors",
        f"layout     {m['options'].get('layout')}, {_layout_counts(m.get('layout_transforms'))}",
        f"quantize   {_quantize_text(m['options'])}",
        "files      " + ", ".join(f"{n} ({f['size']} B)" for n, f in m["files"].items()),
    ])
    _emit(m, as_json, text)


def _quantize_text(options: dict) -> str:
    int4 = options.get("int4")
    if options.get("quantize") != "int4":
        return "none"
    if not int4:  # an artifact from before the int4 options were recorded
        return "int4"
    parts = [f"group {int4['group']}", "symmetric" if int4["symmetric"] else "asymmetric",
             "embeddings int4" if int4["embeddings"] else "embeddings float",
             "LM head int4" if int4["lm_head"] else "LM head float"]
    return "int4 (" + ", ".join(parts) + ")"


def _layout_counts(counts: dict | None) -> str:
    if not counts:
        return "transforms not recorded"
    return f"standalone layout transforms {counts['after']} (with --layout none: {counts['before']})"


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def targets(as_json):
    """List target presets."""
    from edgec.targets.presets import PRESETS, resolve

    presets = [resolve(name) if name == "host" else p for name, p in PRESETS.items()]
    rows = [{"name": p.name, "aliases": list(p.aliases), "description": p.description,
             "device": p.device_kind, "toolchain": p.toolchain, "target": p.target} for p in presets]
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(
        f"{r['name']:<{width}}  {r['description']}" + (f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else "")
        for r in rows)
    _emit({"targets": rows}, as_json, text)


cli.add_command(__import__("edgec.cli_build", fromlist=["build"]).build)  # edgec build (docs/build.md)
cli.add_command(__import__("edgec.cli_tune", fromlist=["tune"]).tune)  # edgec tune (schedules/tuner.py)


def main(argv=None) -> int:
    """Console entry point: one place maps errors to exit codes and one-line messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet = "--json" in argv
    setup_logging(debug, chatty=sys.stderr.isatty() and not quiet)
    try:
        cli.main(args=argv, prog_name="edgec", standalone_mode=False)
    except click.exceptions.Abort:  # click's name for a KeyboardInterrupt inside a command
        click.echo("Interrupted.", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except EdgecError as err:
        if debug:
            logger.exception("details")
        click.echo(f"Error: {err}", err=True)
        if quiet:  # --json: machines get the error class too
            click.echo(json.dumps({"error": {"type": type(err).__name__, "message": str(err),
                                             "exit_code": err.exit_code}}))
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as err:  # a bug in edgec or TVM: still one line unless --debug
        if debug:
            raise
        last = (str(err).strip().splitlines() or [""])[-1]
        click.echo(f"Error: internal error ({getattr(err, 'kind', type(err).__name__)}): {last}; "
                   "rerun with --debug for the traceback", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
