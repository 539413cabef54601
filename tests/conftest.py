import os
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('IN_TEST', '1')
