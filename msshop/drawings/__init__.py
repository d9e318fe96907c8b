"""Drawings two layers share: the browser code that draws a thing msshop shows on more than
one page. `msshop trace --export html` (instruments) and the live dashboard (a runtime
process, which may not import the instruments) draw a trace's waterfall with the same
script, so it lives here, below both, and imports nothing of msshop's."""
