"""Marker ops: placeholders the trace emits (domain ``qvggt``) and graph passes lower.

A Linear becomes ``qvggt.Linear`` (attribute ``layer``: its dotted name), an attention core
``qvggt.Attention``, and with ``dense_loop`` the two DPT heads one ``qvggt.DenseHeads``. A saved
export never holds a node of this domain.
"""
MARKER_DOMAIN = "qvggt"
LINEAR_MARKER = "Linear"
ATTENTION_MARKER = "Attention"
DENSE_MARKER = "DenseHeads"
