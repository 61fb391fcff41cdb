"""Stand-in for the trainer's seam ``tagwatch.train.models.build_serving_model`` (the trainer lives on its own
branch): rebuilds the test two-head CNN from a checkpoint dict with the trainer's keys."""

from tests.support.serving_models import TinyTwoHead


def build_serving_model(checkpoint: dict):
    config = checkpoint["model_config"]
    model = TinyTwoHead(num_labels=config["num_labels"], num_categories=config["num_categories"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()
