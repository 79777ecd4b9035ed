"""What the installed llama.cpp was built for: CPU features, native or portable, the server binary.

``hearth doctor`` reports it and fails on a build that can crash on other CPUs: a native build
(``GGML_NATIVE``, tied to the build machine) or one with ggml's AMX kernels, which segfault on
Sapphire Rapids-class Xeons (llama.cpp issue 20824)::

    report = inspect_build()
    report.features["AVX2"], report.amx, report.problems
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.llm.engine import default_server_path

_FEATURE = re.compile(r"([A-Z0-9_]+) = (\d)")
_AMX_SYMBOL = b"ggml_backend_amx"


@dataclass
class BuildReport:
    """The installed llama.cpp build, as the binding and the server binary describe it."""

    features: dict[str, bool] = field(default_factory=dict)
    libraries: Path | None = None
    amx_symbol: bool = False
    server_path: Path = field(default_factory=default_server_path)
    server_version: str | None = None
    server_error: str | None = None
    build_flags: str = ""
    opt_in: str = ""  # HEARTH_LLAMA_CMAKE_ARGS the build was made with
    shared_with_server: bool | None = None  # the binding loads the server build's own libraries

    @property
    def amx(self) -> bool:
        """Whether the AMX kernels are compiled in."""
        return self.amx_symbol or any(v for k, v in self.features.items() if k.startswith("AMX"))

    @property
    def native(self) -> bool:
        """Whether the build was made for the build machine's CPU (``GGML_NATIVE=ON``)."""
        return "-DGGML_NATIVE=ON" in self.build_flags

    @property
    def enabled_features(self) -> list[str]:
        """The instruction sets and options the CPU backend uses."""
        return [name for name, on in self.features.items() if on]

    @property
    def native_opted_in(self) -> bool:
        """A native build someone asked for (HEARTH_LLAMA_CMAKE_ARGS), for a CPU they know."""
        return self.native and "-DGGML_NATIVE=ON" in self.opt_in

    @property
    def problems(self) -> list[str]:
        """What makes this build unsafe to run on other machines."""
        found = []
        if self.amx:
            found.append("the AMX kernels are compiled in (they crash on Sapphire Rapids-class Xeons)")
        if self.native and not self.native_opted_in:
            found.append(
                "it is a native build (GGML_NATIVE=ON): it runs only on CPUs like the build machine's"
            )
        if self.shared_with_server is False:
            found.append(
                "llama-cpp-python carries a llama.cpp build of its own (pip compiles it native), not the "
                "portable one deploy/install.sh made for llama-server"
            )
        return found


def inspect_build(server_path: Path | None = None) -> BuildReport:
    """Read the CPU features of the binding's llama.cpp and check the llama-server binary next to it."""
    report = BuildReport(server_path=server_path or default_server_path())
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
        report.features = {name: value == "1" for name, value in _FEATURE.findall(info)}
        report.libraries = Path(llama_cpp.__file__).parent / "lib"
    except (ImportError, OSError, RuntimeError):
        pass
    for lib in _cpu_libraries(report.libraries, report.server_path.parent):
        if _AMX_SYMBOL in lib.read_bytes():
            report.amx_symbol = True
    binding = _cpu_libraries(report.libraries)
    server = _cpu_libraries(report.server_path.parent)
    if binding and server:
        report.shared_with_server = {lib.stat().st_ino for lib in binding} == {
            lib.stat().st_ino for lib in server
        }
    info_file = report.server_path.parent / "BUILD_INFO"
    if info_file.is_file():
        for line in info_file.read_text().splitlines():
            if line.startswith("flags="):
                report.build_flags = line[len("flags=") :]
            elif line.startswith("opt_in="):
                report.opt_in = line[len("opt_in=") :]
    try:
        out = subprocess.run(
            [str(report.server_path), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
        text = (out.stdout + out.stderr).strip()
        if out.returncode == 0:
            report.server_version = next(
                (ln for ln in text.splitlines() if ln.startswith("version")), text[:80]
            )
        else:
            report.server_error = f"exited with status {out.returncode}: {text[-200:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        report.server_error = str(exc)
    return report


def _cpu_libraries(*dirs: Path | None) -> list[Path]:
    seen: dict[Path, Path] = {}
    for d in dirs:
        if d is None or not d.is_dir():
            continue
        for lib in d.glob("libggml-cpu*.so*"):
            if lib.is_file() and not lib.is_symlink():
                seen.setdefault(lib.resolve(), lib)
    return list(seen.values())
