"""Generated pages (run by mkdocs-gen-files at `make docs`): the configuration reference and the command line help,
both from the pydantic config models' field descriptions (bert_pipeline/config_reference.py), so no setting is
described by hand twice."""

import mkdocs_gen_files

from bert_pipeline import config_reference
from flows.cli import build_parser

INTRO = """# Configuration reference

Every key of the YAML config, generated from the config models (`bert_pipeline/config.py`): the same text that
`bert-pipeline --help` prints. Nest keys in YAML (`train:` then `epochs: 2`) or give them dotted on the command line
(`--set train.epochs=2`; `--set` wins over the file). Values are read by YAML 1.2's core rules: only `true`/`false`
are booleans, a leading-zero number such as `012` is refused. A misspelt key, a value outside its limits or a choice
not listed is refused before any stage starts, naming the key.

"""

with mkdocs_gen_files.open("reference/configuration.md", "w") as page:
    page.write(INTRO + config_reference.markdown())

parser = build_parser()
commands = parser._subparsers._group_actions[0].choices  # argparse keeps sub-commands here only
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write("# Command line\n\n`bert-pipeline COMMAND --config FILE [--set key=value ...]`, as `--help` prints "
               "it. Under its options, each command's `--help` also lists the configuration keys it reads: they are "
               "on the [configuration reference](configuration.md).\n\n")
    for name, command in [("", parser), *commands.items()]:
        options = command.format_help().split("configuration keys (")[0].rstrip()
        page.write(f"## bert-pipeline {name}\n\n```text\n{options}\n```\n\n")
