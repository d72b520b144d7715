"""The script users load: `mitmdump -s addon/normalize_usage.py` (or mitmweb, mitmproxy).

mitmproxy puts this file's folder on sys.path, so the `usagefix` package beside it imports
without installation.
"""

from mitmproxy import contentviews

from usagefix.addon import UsageFix
from usagefix.contentview import CommentColumn, UsageDiffContentview

contentviews.add(UsageDiffContentview)

addons = [UsageFix(), CommentColumn()]
