"""What a pin check costs, against its limit and against what surrounds it (issue 7).

:mod:`pinlab.bench.timer` is the measuring method, :mod:`pinlab.bench.pins` the suite behind
``pinlab bench pins``; ``pinlab bench collect`` runs :mod:`pinlab.bench.collect`.
"""
