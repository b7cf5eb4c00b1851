"""The plan stage: a placement of models onto servers, written as TF Serving config files and plan.json."""
