"""Fixed point: Loihi-2-style integer arithmetic (:mod:`.arith`), the switches of every
approximation (:mod:`.switches`), the quantiser (:mod:`.quantize`) and the batched emulator with
the learning engine (:mod:`.emulator`). Nothing here imports lava."""
