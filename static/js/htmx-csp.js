// htmx settings the Content-Security-Policy needs (no inline styles, no eval): its indicator
// styles are in app.css instead. Loaded (deferred) right after htmx, so it runs before htmx starts
// on DOMContentLoaded; a page's own <meta name="htmx-config"> is merged on top of it.
htmx.config.includeIndicatorStyles = false;
htmx.config.allowEval = false;
htmx.config.allowScriptTags = false;
