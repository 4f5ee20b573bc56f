"""Lava processes of lava-diffmod, installed as ``lava_diffmod.processes``.

One folder per process, in Lava's own convention: ``<name>/process.py`` declares the
process (ports and variables) and ``<name>/models.py`` its ``floating_pt`` and
``fixed_pt`` process models. Filled by a later issue.
"""
