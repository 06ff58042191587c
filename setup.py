"""Only one thing pyproject.toml cannot say: schemas/ (DESIGN §2 keeps it at the top level)
ships inside the ztm package in a wheel, where ztm.schemas looks for it when installed."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SCHEMAS = Path(__file__).resolve().parent / "schemas"


class BuildWithSchemas(build_py):
    def run(self) -> None:
        super().run()
        for source, dest in self._schema_files():
            self.mkpath(str(dest.parent))
            self.copy_file(str(source), str(dest))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *(str(dest) for _, dest in self._schema_files())]

    def _schema_files(self) -> list[tuple[Path, Path]]:
        return [(s, Path(self.build_lib, "ztm", "schemas", s.relative_to(SCHEMAS)))
                for s in sorted(SCHEMAS.rglob("*")) if s.is_file()]


setup(cmdclass={"build_py": BuildWithSchemas})
