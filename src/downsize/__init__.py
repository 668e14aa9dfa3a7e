"""downsize: turn a large language model into a smaller one that keeps its skill.

    $ downsize zoo list
    $ downsize eval zoo:coder-teacher --data zoo:stdlib
"""

__version__ = "0.1.0"
