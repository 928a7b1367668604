"""On-disk formats, one module each: teacher weights (torch .pt, CTranslate2) read with numpy, and the target shard record."""
