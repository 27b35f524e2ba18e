"""What an artifact for an aarch64 Linux device carries besides the model: runtime, runner, README.

    runtime/libedgec_vulkan.so  (Vulkan targets) edgec's Vulkan runtime plugin, for the artifact's machine
    runtime/libtvm_runtime.so   the TVM runtime (Relax VM, param loading) for aarch64
    runtime/libtvm_ffi.so       the tvm-ffi library it links against
    bin/edgec-run               the native runner (source: edgec/runtime/native/runner.cc)
    README.txt                  how to run the model on the device with no Python

Android artifacts get no extras: the manylinux libraries need glibc, which Android lacks.
"""

from __future__ import annotations

RUNTIME_DIR = "runtime"
RUNNER = "bin/edgec-run"
README = "README.txt"


def bundles_runtime(preset) -> bool:
    return preset.arch == "aarch64" and preset.toolchain == "aarch64-linux-gnu"


VULKAN_PLUGIN = "runtime/libedgec_vulkan.so"


def vulkan_plugin(preset, options) -> bytes:
    """The Vulkan runtime plugin for the artifact's machine: built here, or with the NDK for Android."""
    from edgec.runtime import host_arch
    from edgec.targets.toolchain import find_aarch64_gxx, find_android_clang
    from edgec.targets.vulkan import plugin

    if preset.toolchain == "android-ndk":
        return plugin.library_bytes(find_android_clang(getattr(options, "ndk", None)), cross=True)
    if preset.toolchain == "aarch64-linux-gnu":
        return plugin.library_bytes(find_aarch64_gxx(), cross=True)
    if preset.arch != host_arch():
        from edgec.errors import ToolchainError

        raise ToolchainError(f"no compiler for a {preset.arch} Vulkan runtime plugin on this {host_arch()} machine")
    return plugin.library_bytes()


def load_vulkan_plugin(artifact, workdir: str) -> None:
    """Load the artifact's own Vulkan plugin (or, for an artifact without one, one built here)."""
    import os

    from edgec.targets.vulkan import plugin

    data = artifact.files.get(VULKAN_PLUGIN)
    if data is None:
        plugin.load()
        return
    path = os.path.join(workdir, os.path.basename(VULKAN_PLUGIN))
    with open(path, "wb") as f:
        f.write(data)
    plugin.load(path)


def extra_files(preset, options, manifest: dict | None = None) -> dict[str, bytes]:
    """``{artifact member name: bytes}`` to add for ``preset``; empty for targets that need none."""
    plugin = {VULKAN_PLUGIN: vulkan_plugin(preset, options)} if preset.device_kind == "vulkan" else {}
    if not bundles_runtime(preset):
        return plugin
    from edgec.runtime import device_libs, native_build

    runtime_dir = getattr(options, "runtime_dir", None)
    files = {f"{RUNTIME_DIR}/{name}": data for name, data in device_libs.runtime_libs("aarch64", runtime_dir).items()}
    with open(native_build.runner_path("aarch64", runtime_dir), "rb") as f:
        files[RUNNER] = f.read()
    files[README] = readme(preset, manifest or {}).encode()
    return {**files, **plugin}


def readme(preset, manifest: dict) -> str:
    inputs = manifest.get("inputs", [])
    outputs = manifest.get("outputs", [])
    input_args = " ".join(f"--input {spec['name']}.npy" for spec in inputs) or "--input IN.npy"

    def sig(specs):
        return "\n".join(f"  {i}. {s['name']}: {s['dtype']}[{', '.join(map(str, s['shape']))}]"
                         for i, s in enumerate(specs)) or "  (see manifest.json)"

    cuda = ""
    if preset.device_kind == "cuda":
        cuda = (
            "\nCUDA: this artifact's kernels run on the Jetson GPU. The CUDA runtime is not in this bundle;\n"
            "it comes from JetPack on the device. The bundled runtime/ and bin/edgec-run are the CPU side:\n"
            "bin/edgec-run initializes the CPU device only, so running the GPU kernels also needs TVM's\n"
            "libtvm_runtime_cuda.so built against your JetPack's CUDA; this edgec does not ship it yet.\n"
        )
    return f"""edgec artifact for {preset.name} ({preset.description})

Run it on the device, no Python needed (aarch64 Linux with glibc 2.34 or newer,
e.g. Raspberry Pi OS 12, Ubuntu 22.04, JetPack 6):

  mkdir model && tar xf MODEL.edgec -C model && cd model
  LD_LIBRARY_PATH=runtime bin/edgec-run --lib lib/model.so --weights weights/model.params \\
      {input_args} --output-dir out [--repeat 50]

(bin/edgec-run also finds runtime/ by itself through its rpath; LD_LIBRARY_PATH is a belt and braces.)

Inputs: one C-ordered .npy per input, given in this order:
{sig(inputs)}
Outputs: out/output0.npy, out/output1.npy, ... in this order:
{sig(outputs)}
With --repeat N the runner times N runs after --warmup W (default 3) and prints one JSON line with
median_ms, p10_ms and p90_ms. Exit status: 0 ok, 2 bad arguments or files, 1 the model failed.
{cuda}
Files: manifest.json (what was built, checksums), lib/model.so (the model), weights/model.params
(weights w0, w1, ... in TVM's param-dict format), runtime/ (TVM runtime for aarch64), bin/edgec-run.
"""
