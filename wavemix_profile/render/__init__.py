"""Renderers: stored results to tables, files and charts. Never imports torch.

One module per output: `terminal` (rich tables), `markdown` (the report), `csv` (flat rows),
`charts` (matplotlib figures, PNG and SVG); `columns` holds the table columns the terminal and
Markdown share, `paper` pairs measured values with the paper's published ones.
"""
