"""Builds the package with the grpc stubs generated from the repository's proto/.

The stubs are not committed: `build_py` runs grpc_tools.protoc over
`../../proto/partnership/v1/*.proto` (or the directory `PM_PROTO_DIR` names) into
`partnership_metrics/_pb/partnership/v1/`, and rewrites the generated imports so the
modules find each other inside the package. `google/rpc/status.proto` is not
generated: it comes from googleapis-common-protos at run time.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PACKAGE = "partnership_metrics"
GENERATED = "_pb"


def proto_dir() -> Path:
    configured = os.environ.get("PM_PROTO_DIR")
    candidate = Path(configured) if configured else HERE / ".." / ".." / "proto"
    candidate = candidate.resolve()
    if not (candidate / "partnership" / "v1").is_dir():
        raise SystemExit(
            f"partnership-metrics: the proto directory was not found at {candidate} "
            "(expected partnership/v1/*.proto in it). Build the package from the "
            "repository, e.g. `pip install ./clients/python`, or set PM_PROTO_DIR to "
            "the repository's proto/ directory."
        )
    return candidate


def generate(out_root: Path) -> None:
    """Writes the stubs into out_root/_pb (a fresh directory every time)."""
    import grpc_tools
    from grpc_tools import protoc

    protos = proto_dir()
    out = out_root / GENERATED
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = sorted(str(p.relative_to(protos)) for p in (protos / "partnership" / "v1").glob("*.proto"))
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{protos}", f"-I{wkt}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *files]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"partnership-metrics: protoc failed with exit code {code}: {' '.join(args)}")
    # Generated modules import each other as `partnership.v1`: make that the package's.
    pattern = re.compile(r"^from partnership\.v1 import ", re.MULTILINE)
    for path in out.rglob("*.py*"):
        text = path.read_text()
        path.write_text(pattern.sub(f"from {PACKAGE}.{GENERATED}.partnership.v1 import ", text))
    for directory in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text('"""Generated at build time from proto/; not committed."""\n')


class BuildPyWithStubs(build_py):
    """build_py that first generates the grpc stubs into the source tree's package."""

    def run(self) -> None:
        generate(HERE / "src" / PACKAGE)
        # Package discovery ran before the stubs existed: add their packages now.
        for sub in ("", ".partnership", ".partnership.v1"):
            name = f"{PACKAGE}.{GENERATED}{sub}"
            if name not in self.packages:
                self.packages.append(name)
            self.package_data.setdefault(name, []).append("*.pyi")
        self.__dict__.pop("data_files", None)  # recomputed lazily with the new packages
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
