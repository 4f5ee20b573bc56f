"""Backend-neutral structure: grid placement, torus distance, masks, initial weights."""
