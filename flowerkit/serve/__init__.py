"""`flowerkit serve MODEL`: an HTTP API and a web page for a trained model.

    from flowerkit.serve.loading import load_predictor
    from flowerkit.serve.app import ServeSettings, create_app

    app = create_app(load_predictor("runs/demo"), ServeSettings(max_batch=16))
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Modules: `predictors` (what runs: a Keras model or an exported file),
`loading` (which predictor a model path gets),
`batching` (concurrent requests coalesced into one model batch), `app` (the
FastAPI app and the page in `static/`). Needs the `serve` extra:
pip install 'flowerkit[serve]'.
"""
