"""`tagwatch demo`: the whole product end to end on the embedded stack, with a summary table and an HTML report.

Stages (run.py): stack up -> ingest -> training (training.py: one function, swappable for the kfp pipeline) ->
serve on the local Triton -> consumers -> publish the held-out posts -> wait for every decision -> summary
(summary.py) -> report (report.py, plots.py).
"""
