"""Lava processes of lava-diffmod, installed as ``lava_diffmod.processes``.

One folder per process, in Lava's own convention: ``<name>/process.py`` declares the process
(ports and variables) and ``<name>/models.py`` its ``floating_pt`` and ``fixed_pt`` process
models, which call the step functions of ``lava_diffmod.float`` and ``lava_diffmod.fixed``.
Models import their process by its absolute name: Lava loads ``models.py`` by file path.
Build a whole network with :func:`lava_diffmod.lava.network.build`.
"""
