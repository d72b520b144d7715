"""The script users load: `mitmdump -s addon/normalize_usage.py`.

mitmproxy puts this file's folder on sys.path, so the `usagefix` package beside it imports
without installation.
"""

from usagefix.addon import UsageFix

addons = [UsageFix()]
