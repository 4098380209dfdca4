"""The HTTP service: a saved detector behind FastAPI (``ae-anomaly serve``).

batching.py gathers concurrent requests into one forward pass, inputs.py turns uploads
into the detector's input, app.py is the application and its endpoints. Needs the
``serve`` extra (``pip install 'ae-anomaly[serve]'``).
"""
