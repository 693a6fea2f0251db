"""Training: recipes, the trainer (:func:`fit`), what ``zoo train`` does (:func:`train`), checkpoints and exact
resume, loggers and distributed set-up."""

from zoo.training.recipes import RECIPES, Recipe, format_recipe, get_recipe, list_recipes
from zoo.training.runner import train
from zoo.training.trainer import FitResult, Trainer, TrainingDiverged, fit

__all__ = [
    "RECIPES",
    "FitResult",
    "Recipe",
    "Trainer",
    "TrainingDiverged",
    "fit",
    "format_recipe",
    "get_recipe",
    "list_recipes",
    "train",
]
