"""`capellm config`: print the resolved configuration as YAML.

    capellm config [--preset NAME] [--config FILE] [--<field> VALUE ...]
"""

from __future__ import annotations

import yaml

from capellm.cli.common import config_parser, resolve_config


def main(argv=None) -> int:
    args = config_parser("capellm config", "Print the resolved configuration as YAML.").parse_args(argv)
    from capellm.config import to_dict

    print(yaml.safe_dump(to_dict(resolve_config(args)), sort_keys=False), end="")
    return 0
