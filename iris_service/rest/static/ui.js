// The demo page: sends the form to the public JSON API and shows its answer.
// Plain browser JavaScript: no framework, no build step, no network but this server.
(function () {
  "use strict";

  var form = document.getElementById("predict-form");
  if (!form) { return; }
  var picker = document.getElementById("model-picker");
  if (picker) {
    // Without JavaScript the Show button submits; with it, choosing is enough.
    picker.addEventListener("change", function () { picker.form.submit(); });
  }

  var inputs = Array.prototype.slice.call(form.querySelectorAll("input[type=number]"));
  var summary = document.getElementById("result-summary");
  var formError = document.getElementById("form-error");

  // The API key field is there only when the server needs a key. The key lives in
  // sessionStorage (this tab, until it closes), never in the page, a cookie or a URL,
  // and goes to the server as the X-API-Key header.
  var keyInput = document.getElementById("api-key");
  var keyMessage = document.getElementById("api-key-msg");
  var KEY_STORE = "iris-service.api-key";

  function rememberKey(key) {
    try {
      if (key) { window.sessionStorage.setItem(KEY_STORE, key); } else { window.sessionStorage.removeItem(KEY_STORE); }
    } catch (e) { /* storage off (private mode, policy): the key still works for this page */ }
  }

  if (keyInput) {
    try { keyInput.value = window.sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { keyInput.value = ""; }
    keyInput.addEventListener("change", function () { rememberKey(keyInput.value.trim()); });
  }

  function messageFor(input) {
    return document.getElementById(input.getAttribute("aria-describedby"));
  }

  function clearMessages() {
    inputs.forEach(function (input) {
      input.removeAttribute("aria-invalid");
      var msg = messageFor(input);
      msg.textContent = "";
      msg.className = "message";
    });
    if (keyInput) {
      keyInput.removeAttribute("aria-invalid");
      keyMessage.textContent = "";
      keyMessage.className = "message";
    }
    formError.textContent = "";
  }

  // The key's problems go next to the key field, at the top of the form where the person looks.
  function blameKey(text) {
    keyMessage.textContent = text;
    keyMessage.className = "message error";
    keyInput.setAttribute("aria-invalid", "true");
    keyInput.focus();
    formError.textContent = "No prediction: see the API key field.";
  }

  function show(input, text, kind) {
    var msg = messageFor(input);
    msg.textContent = text;
    msg.className = "message " + kind;
    if (kind === "error") { input.setAttribute("aria-invalid", "true"); }
  }

  // A value outside the training range still gets an answer, with a warning:
  // the model extrapolates there, which a person should know. When the server
  // rejects such values (INPUT_RANGE_POLICY=reject) its own message, with the
  // allowed range, goes next to the field instead.
  function warnOutOfRange() {
    if (form.dataset.rangePolicy === "reject") { return; }
    inputs.forEach(function (input) {
      var v = input.valueAsNumber;
      var lo = parseFloat(input.dataset.min), hi = parseFloat(input.dataset.max);
      if (!isNaN(v) && ((!isNaN(lo) && v < lo) || (!isNaN(hi) && v > hi))) {
        show(input, "Outside the training range (" + input.dataset.min + " – " + input.dataset.max +
             "): the model is extrapolating.", "warning");
      }
    });
  }

  function body() {
    var features = {};
    inputs.forEach(function (input) {
      // Empty or unparseable fields go as null: the API's own message comes back.
      var v = input.value.trim() === "" ? NaN : input.valueAsNumber;
      features[input.name] = isFinite(v) ? v : null;
    });
    return { features: features };
  }

  // The 422 shape is {"errors": {"json": {"features": {<feature>: [messages]}}}}
  // (or a list of messages for the whole row); put each next to its field.
  function showErrors(payload) {
    var errors = (((payload || {}).errors || {}).json || {});
    var perField = errors.features;
    var placed = false;
    if (perField && !Array.isArray(perField)) {
      inputs.forEach(function (input) {
        if (perField[input.name]) {
          show(input, [].concat(perField[input.name]).join(" "), "error");
          placed = true;
        }
      });
    }
    var first = inputs.filter(function (i) { return i.getAttribute("aria-invalid"); })[0];
    if (first) { first.focus(); }
    if (!placed) {
      var text = (payload && (payload.message || payload.error)) || "The request failed.";
      if (Array.isArray(perField)) { text = perField.join(" "); }
      formError.textContent = text;
    } else {
      formError.textContent = "Please correct the highlighted field.";
    }
    summary.textContent = "No prediction: the input was refused.";
    resetBars();
  }

  // A 401 is about the key, not the row: say so, and send the person to the key field.
  function showUnauthorized(sentKey) {
    if (!keyInput) {
      formError.textContent = "401 Unauthorized: this server needs an API key, and this page was not told to ask for one.";
    } else if (sentKey) {
      blameKey("401 Unauthorized: the API key was refused. Check it and try again.");
    } else {
      blameKey("401 Unauthorized: this server needs an API key. Enter it here.");
    }
    summary.textContent = "No prediction: not authorised.";
    resetBars();
  }

  function showRefusal(text) {
    formError.textContent = text;
    summary.textContent = "No prediction.";
    resetBars();
  }

  // After a prediction, the explain route's contributions to the predicted class's score, as bars:
  // one per feature, right of the middle line when it pushes towards that class, left when against.
  var explanation = document.getElementById("explanation");

  function hideExplanation() {
    if (explanation) { explanation.hidden = true; }
  }

  function showContributions(answer) {
    var index = answer.classes.indexOf(answer.label);
    var parts = answer.contributions[index];
    var largest = Math.max.apply(null, parts.map(Math.abs)) || 1;
    var list = document.getElementById("contributions");
    list.textContent = "";
    answer.features.forEach(function (name, i) {
      var value = parts[i];
      var item = document.createElement("li");
      item.className = "contribution " + (value < 0 ? "negative" : "positive");
      item.dataset.feature = name;
      item.dataset.value = String(value);
      var label = document.createElement("span");
      label.className = "contribution-label";
      label.textContent = name.replace(/_/g, " ");
      var track = document.createElement("span");
      track.className = "contribution-track";
      var left = document.createElement("span");
      left.className = "contribution-half left";
      var right = document.createElement("span");
      right.className = "contribution-half right";
      var fill = document.createElement("span");
      fill.className = "contribution-fill";
      fill.style.width = (Math.abs(value) / largest * 100).toFixed(1) + "%";  // CSSOM: allowed by the CSP
      (value < 0 ? left : right).appendChild(fill);
      track.appendChild(left);
      track.appendChild(right);
      var shown = document.createElement("span");
      shown.className = "contribution-value";
      shown.textContent = (value < 0 ? "\u2212" : "+") + Math.abs(value).toFixed(3);
      item.setAttribute("aria-label", name + ": " + (value < 0 ? "against " : "for ") + answer.label + ", " +
                        shown.textContent);
      item.appendChild(label);
      item.appendChild(track);
      item.appendChild(shown);
      list.appendChild(item);
    });
    var space = answer.output === "probability" ? "probability" : "score (decision function)";
    document.getElementById("explain-summary").textContent = "Each feature's contribution to the " +
      answer.label + " " + space + ", from a baseline of " + answer.baseline[index].toFixed(3) +
      " (" + (answer.method === "linear" ? "exact, from the training means" : "TreeSHAP") + ").";
    document.getElementById("explain-heading").textContent = "Why " + answer.label;
    explanation.hidden = false;
  }

  // No explanation (this model cannot be explained, or the request failed): say why, in one line.
  function showNoExplanation(text) {
    document.getElementById("contributions").textContent = "";
    document.getElementById("explain-heading").textContent = "No explanation";
    document.getElementById("explain-summary").textContent = text;
    explanation.hidden = false;
  }

  function explain(headers, sent) {
    if (!explanation || !form.dataset.explainEndpoint) { return undefined; }
    return fetch(form.dataset.explainEndpoint, { method: "POST", headers: headers, body: sent })
      .then(function (response) {
        return response.json().then(function (payload) {
          if (response.ok) { showContributions(payload); } else { showNoExplanation(payload.message || payload.error); }
        });
      }).catch(function () { showNoExplanation("The explanation could not be fetched."); });
  }

  function resetBars() {
    hideExplanation();
    form.ownerDocument.querySelectorAll(".bar").forEach(function (bar) {
      bar.querySelector(".bar-fill").style.width = "0%";
      bar.querySelector(".bar-value").textContent = "–";
      bar.classList.remove("winner");
    });
  }

  function showAnswer(answer) {
    if (answer.label !== undefined) {
      summary.innerHTML = "";
      summary.appendChild(document.createTextNode("Predicted class: "));
      var strong = document.createElement("strong");
      strong.id = "predicted-label";
      strong.textContent = answer.label;
      summary.appendChild(strong);
    } else {
      summary.textContent = "Predicted value: " + answer.prediction;
    }
    var probabilities = answer.probabilities || {};
    document.querySelectorAll(".bar").forEach(function (bar) {
      var p = probabilities[bar.dataset.class];
      var pct = p === undefined ? 0 : p * 100;
      bar.querySelector(".bar-fill").style.width = pct.toFixed(1) + "%";
      bar.querySelector(".bar-value").textContent = p === undefined ? "–" : pct.toFixed(1) + "%";
      bar.setAttribute("aria-label", bar.dataset.class + ": " + (p === undefined ? "no probability" : pct.toFixed(1) + " percent"));
      bar.classList.toggle("winner", bar.dataset.class === answer.label);
    });
  }

  form.querySelectorAll("button.example").forEach(function (button) {
    button.addEventListener("click", function () {
      var values = JSON.parse(button.dataset.values);
      inputs.forEach(function (input) { input.value = values[input.name]; });
      clearMessages();
    });
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearMessages();
    warnOutOfRange();
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    var key = keyInput ? keyInput.value.trim() : "";
    if (key) {
      // fetch refuses header values outside Latin-1; say what is wrong instead of "could not reach".
      if (!/^[\x20-\x7e]+$/.test(key)) {
        blameKey("An API key is plain text: letters, digits and punctuation only.");
        summary.textContent = "No prediction.";
        resetBars();
        form.dataset.state = "done";
        return;
      }
      headers["X-API-Key"] = key;
    }
    if (keyInput) { rememberKey(key); }  // an emptied field forgets the key too
    summary.textContent = "Predicting…";
    form.setAttribute("aria-busy", "true");
    hideExplanation();
    var sent = JSON.stringify(body());
    fetch(form.dataset.endpoint, {
      method: "POST",
      headers: headers,
      body: sent
    }).then(function (response) {
      if (response.status === 401) { showUnauthorized(key); return undefined; }
      return response.json().then(function (payload) {
        if (!response.ok) { showErrors(payload); return undefined; }
        showAnswer(payload);
        return explain(headers, sent);  // the form is "done" once the explanation is shown too
      }, function () {
        showRefusal("The server answered " + response.status + " without a JSON body.");
      });
    }).catch(function (error) {
      formError.textContent = "Could not reach the server: " + error.message;
      summary.textContent = "No prediction.";
    }).finally(function () {
      form.removeAttribute("aria-busy");
      form.dataset.state = "done";
    });
  });
})();
