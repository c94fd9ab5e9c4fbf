import torch

from train import torch as torch_trainer
from train.config import TrainConfig
from train.data import article_data


def test_same_seed_same_parameters():
    data = article_data()
    _, a = torch_trainer.train(data, TrainConfig(seed=1))
    _, b = torch_trainer.train(data, TrainConfig(seed=1))
    _, c = torch_trainer.train(data, TrainConfig(seed=2))
    assert (a.weights, a.bias, a.losses) == (b.weights, b.bias, b.losses)
    assert a.losses[0] != c.losses[0]


def test_article_result_summed_loss_converges_to_19():
    model, result = torch_trainer.train(article_data(), TrainConfig(seed=0))
    # the article: 18.999998; the summed loss makes the step 6x larger than Keras's mean
    assert abs(result.headline_y - 19) < 1e-4
    assert result.final_loss < 1e-9
    assert abs(result.weights[0] - 2) < 1e-5 and abs(result.bias + 1) < 1e-5


def test_state_dict_round_trip_uses_weights_only(tmp_path):
    model, _ = torch_trainer.train(article_data(), TrainConfig(seed=0, epochs=5))
    path = tmp_path / "m.pt"
    torch_trainer.save(model, path)
    loaded = torch_trainer.load(path, 1)
    assert torch.equal(loaded.weight, model.weight) and torch.equal(loaded.bias, model.bias)
    torch.save({"obj": object()}, tmp_path / "evil.pt")  # pickled object: refused by weights_only
    try:
        torch_trainer.load(tmp_path / "evil.pt", 1)
    except Exception as exc:
        assert "weights_only" in str(exc) or "Unsupported" in str(exc)
    else:
        raise AssertionError("a pickled object loaded with weights_only=True")
