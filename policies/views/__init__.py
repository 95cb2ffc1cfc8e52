"""The policies pages (Django sessions + htmx), one module per aggregate beside the page they
all render (``page``): ``rule_sets``, ``drafts``, ``tool_policies``."""
