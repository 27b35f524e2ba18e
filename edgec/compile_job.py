"""One ``edgec compile`` command as a job: compile, verify when asked, save; the CLI runs it isolated."""

from __future__ import annotations

from edgec.signature import TensorSpec


def compile_to_file(request: dict) -> dict:
    """Compile ``request["model"]`` and write the artifact to ``request["out"]``; returns the report."""
    import edgec

    inputs = {name: TensorSpec.from_json(spec) for name, spec in request.get("inputs", {}).items()}
    art = edgec.compile(request["model"], request.get("target", "host"), inputs,
                        quantize=request.get("quantize"), calibration=request.get("calibration"),
                        int4_group=request.get("int4_group"), int4_symmetric=request.get("int4_symmetric", False),
                        int4_embeddings=request.get("int4_embeddings", False),
                        int4_lm_head=request.get("int4_lm_head", True),
                        layout=request.get("layout", "auto"), tuning_db=request.get("tuning_db"),
                        arch=request.get("arch"), ndk=request.get("ndk"), runtime_dir=request.get("runtime_dir"),
                        dump_ir=request.get("dump_ir"), sparse_sample=request.get("sparse_sample"))
    verification = None
    if request.get("verify"):
        from edgec.verify import verify_artifact

        verification = verify_artifact(art, request["model"])  # raises VerificationError (exit 1) on mismatch
    out = request["out"]
    art.save(out)
    text = f"wrote {out} ({art.preset}, {sum(len(b) for b in art.files.values()) / 1e6:.1f} MB)"
    if verification:
        text += "\n" + verification_text(verification)
    sparse = art.manifest.get("sparse_dataflows")
    if sparse:
        text += "\nsparse dataflows: " + ", ".join(f"{g} {f}" for g, f in sorted(sparse["groups"].items()))
    return {"artifact": out, "sha256": art.sha256(), "preset": art.preset, "target": art.target,
            "inputs": art.manifest["inputs"], "outputs": art.manifest["outputs"],
            "layout_transforms": art.report.layout_transforms,
            "report": art.report.to_json(), "verification": verification.to_json() if verification else None,
            "sparse_dataflows": sparse,
            "text": text}


def verification_text(v) -> str:
    if not v.executed:
        return f"verify: NOT EXECUTED — {v.note}"
    lines = [f"verify ({v.how}): " + ("ok" if v.ok else "MISMATCH")]
    for c in v.checks:
        lines.append(f"  {c.name}: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}")
    for e in v.float_error:  # information: what quantization costs, not a failure
        lines.append(f"  {e['name']} vs the float model: max abs {e['max_abs']:.3g}, "
                     f"relative L2 {e['relative_l2']:.3g} (quantization error)")
    return "\n".join(lines)
