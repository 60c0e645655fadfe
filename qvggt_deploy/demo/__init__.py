"""``qvggt demo``: the whole pipeline on the embedded tiny model, stage by stage, into a report folder."""
