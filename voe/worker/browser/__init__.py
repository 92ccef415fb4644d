"""Browser backends' rendering: Playwright driving Debian's Chromium, under the fetch chain.

``client`` is the worker's side (``Browser``, ``RenderTask``, ``Rendered``,
``BrowserError``); ``host`` the process that runs Playwright's asyncio loop,
``profiles`` its browser contexts by identity, ``render`` one render in it,
``inpage`` its waits and reads in the page's own world, ``blocking`` what a page
never sends; ``chained`` passes a render through the fetch chain; ``cookies`` moves
an identity's cookies in and out of a browser context; ``process`` finds and ends
browser processes by PID.
"""
