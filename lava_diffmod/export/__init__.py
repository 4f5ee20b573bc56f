"""Export of trained networks to exchange formats: :mod:`.nir` (Neuromorphic Intermediate
Representation, ``lava-diffmod export-nir``; see docs/nir.md)."""
