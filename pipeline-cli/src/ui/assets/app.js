// pipeline ui: the one script (served from /assets/app.js). It only keeps a running run's
// page current: it asks the server for the run's state (the request waits until something
// changes) and updates the DAG's nodes and the step table in place, without a reload.
(function () {
  'use strict';
  var body = document.body;
  var stateUrl = body.getAttribute('data-live-state');
  if (!stateUrl) return;
  var fragmentUrl = body.getAttribute('data-live-fragment');
  var version = body.getAttribute('data-live-version') || '';
  var updates = 0;
  var root = document.documentElement;
  root.setAttribute('data-live', 'watching');

  function find(selector, name) {
    var all = document.querySelectorAll(selector);
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute('data-step') === name) return all[i];
    }
    return null;
  }

  function badge(status) {
    var span = document.createElement('span');
    span.className = 'key ' + status;
    span.textContent = status;
    return span;
  }

  // Applies one step's state; false when the page has no node or row for it yet.
  function applyStep(s) {
    var row = find('#steps tr[data-step]', s.name);
    var node = find('g.node[data-step]', s.name);
    if (!row || !node) return false;
    if (row.getAttribute('data-status') !== s.status) {
      row.setAttribute('data-status', s.status);
      var seen = row.getAttribute('data-seen') || '';
      row.setAttribute('data-seen', seen ? seen + ' ' + s.status : s.status);
      var cell = row.querySelector('td.status');
      cell.textContent = '';
      cell.appendChild(badge(s.status));
      row.classList.remove('changed');
      void row.offsetWidth; // restart the highlight
      row.classList.add('changed');
    }
    row.querySelector('td.duration').textContent = s.duration;
    row.querySelector('td.why').textContent = s.why;
    node.setAttribute('class', 'node ' + s.status);
    node.setAttribute('data-status', s.status);
    var b = node.querySelector('.badge');
    if (b) b.textContent = s.status;
    var d = node.querySelector('.duration');
    if (d) d.textContent = s.duration;
    var title = node.querySelector('title');
    if (title) title.textContent = s.name + ': ' + s.status + (s.why ? ' (' + s.why + ')' : '');
    return true;
  }

  function applyRun(r) {
    var status = document.getElementById('run-status');
    if (status) { status.textContent = ''; status.appendChild(badge(r.status)); }
    var took = document.getElementById('run-duration');
    if (took) took.textContent = r.duration;
    var counts = document.getElementById('run-counts');
    if (counts) {
      counts.textContent = r.executed + ' executed, ' + r.cached + ' cached, ' + r.failed +
        ' failed, ' + r.skipped + ' skipped' + (r.running ? ', ' + r.running + ' running' : '');
    }
  }

  function apply(state) {
    var missing = state.steps.some(function (s) { return !find('#steps tr[data-step]', s.name); });
    var redraw = missing ? fetch(fragmentUrl, { credentials: 'same-origin' }).then(function (res) {
      if (!res.ok) throw new Error('fragment ' + res.status);
      return res.text();
    }).then(function (html) {
      // Keep what each row has shown so far across the redraw.
      var seen = {};
      document.querySelectorAll('#steps tr[data-step]').forEach(function (row) {
        seen[row.getAttribute('data-step')] = row.getAttribute('data-seen');
      });
      document.getElementById('run-live').innerHTML = html;
      document.querySelectorAll('#steps tr[data-step]').forEach(function (row) {
        var before = seen[row.getAttribute('data-step')];
        if (before && before.split(' ').pop() !== row.getAttribute('data-status')) {
          row.setAttribute('data-seen', before + ' ' + row.getAttribute('data-status'));
        } else if (before) {
          row.setAttribute('data-seen', before);
        }
      });
    }) : Promise.resolve();
    return redraw.then(function () {
      state.steps.forEach(applyStep);
      applyRun(state.run);
      version = state.version;
      updates += 1;
      root.setAttribute('data-live-updates', String(updates));
    });
  }

  function poll() {
    var url = stateUrl + '?since=' + encodeURIComponent(version);
    fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (res) {
      if (!res.ok) throw new Error('state ' + res.status);
      return res.json();
    }).then(function (state) {
      var changed = state.version !== version;
      return (changed ? apply(state) : Promise.resolve()).then(function () {
        if (state.run.status === 'running') {
          poll();
        } else {
          root.setAttribute('data-live', 'done');
        }
      });
    }).catch(function (e) {
      root.setAttribute('data-live', 'retrying');
      root.setAttribute('data-live-error', String(e && e.message || e));
      setTimeout(poll, 2000);
    });
  }

  poll();
})();
