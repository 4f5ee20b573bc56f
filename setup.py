"""Package layout that pyproject.toml cannot express (all metadata lives there).

The top-level folders processes/ (Lava's convention: one folder per process) and
hw_profiles/ (TOML data) are installed inside the package as lava_diffmod.processes
(with every subpackage processes/<name>/ found automatically) and lava_diffmod.hw_profiles.
"""

from setuptools import find_packages, setup

setup(
    package_dir={
        "lava_diffmod": "lava_diffmod",
        "lava_diffmod.processes": "processes",
        "lava_diffmod.hw_profiles": "hw_profiles",
    },
    packages=[
        *find_packages(include=["lava_diffmod", "lava_diffmod.*"]),
        "lava_diffmod.processes",
        *(f"lava_diffmod.processes.{name}" for name in find_packages("processes")),
        "lava_diffmod.hw_profiles",
    ],
)
