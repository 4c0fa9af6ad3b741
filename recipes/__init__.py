"""Recipes: one module per workload (model, data, loss, eval). See lionbench/recipe.py."""
