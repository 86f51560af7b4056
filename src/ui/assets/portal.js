// The tenant portal. Its link carries a one-time key in the URL fragment,
// which browsers never send to a server: this exchanges it for a session
// once, keeps the session in this tab only (sessionStorage: no cookie, so
// it works inside another site's iframe) and sends it with every request
// as X-Portal-Session. The pages themselves are HTML from the server.
(function () {
  "use strict";
  var STORE = "hookline-portal-session";
  var root = document.getElementById("portal");

  function say(message) {
    root.textContent = "";
    var p = document.createElement("p");
    p.className = "notice error";
    p.textContent = message;
    root.appendChild(p);
  }

  document.body.addEventListener("htmx:configRequest", function (event) {
    var session = sessionStorage.getItem(STORE);
    if (session) {
      event.detail.headers["X-Portal-Session"] = session;
    }
  });
  document.body.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr.status === 401) {
      sessionStorage.removeItem(STORE);
      say("This portal session has ended. Open the portal again from where you found it.");
    }
  });

  function start() {
    var key = new URLSearchParams(location.hash.slice(1)).get("key");
    var ready = Promise.resolve();
    if (key) {
      history.replaceState(null, "", location.pathname);
      ready = fetch("/portal/exchange", {
        method: "POST",
        credentials: "omit",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: key })
      }).then(function (response) {
        if (!response.ok) {
          throw new Error("exchange");
        }
        return response.json();
      }).then(function (answer) {
        sessionStorage.setItem(STORE, answer.session);
      });
    }
    ready.then(function () {
      if (!sessionStorage.getItem(STORE)) {
        say("Open this portal with the link you were given.");
        return;
      }
      htmx.ajax("GET", "/portal/home", { target: "#portal", swap: "innerHTML" });
    }, function () {
      say("This portal link does not work any more: a link works once, until it expires. Ask for a new one.");
    });
  }

  start();
})();
