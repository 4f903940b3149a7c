"""The generator and discriminator, their checkpoints (safetensors and untrusted pickles) and rendering."""
