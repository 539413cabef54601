"""A thin shim for tools that still look for setup.py; the metadata lives in pyproject.toml.

It adds what pyproject.toml cannot say in one table: the packages (balance_nb and its subpackages) plus the built-in
data folder data_samples/ installed as the data-only package `balance_nb_data`, so that a wheel or `pip install .`
trains from any folder (balance_nb.experiment points BALANCE_NB_DATA at it when there is no data_samples/ beside the
package). `pip install -e .` keeps using pyproject.toml, and a clone keeps reading data_samples/ in place.
"""
from setuptools import setup, find_packages

setup(packages=find_packages(include=['balance_nb', 'balance_nb.*']) + ['balance_nb_data'],
      package_dir={'balance_nb_data': 'data_samples'},
      package_data={'balance_nb_data': ['**/*']},
      include_package_data=False)
