"""Hardware profiles, installed as ``lava_diffmod.hw_profiles``.

Each ``<name>.toml`` here holds one chip's bit widths, shifts, limits and energy
figures as data; ``lava_diffmod.hw`` loads and validates them. Read a profile with
``importlib.resources.files("lava_diffmod.hw_profiles") / "<name>.toml"``.
"""
