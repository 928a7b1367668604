"""On-disk formats, one module each: the target shard record, the model card, the run record, and teacher
weights (torch .pt, CTranslate2) read with numpy."""
