// The map page's drawing (services/gateway/templates/map.html.j2): a file of its own,
// so the page's Content-Security-Policy allows scripts from the gateway only.
(() => {
  const track = JSON.parse(document.getElementById("track-data").textContent);
  const box = document.getElementById("map");
  const fallback = document.getElementById("fallback");
  const slider = document.getElementById("day");
  const shown = document.getElementById("day-shown");
  const useFallback = (why) => {
    box.hidden = true;
    box.dataset.mode = "fallback";
    box.dataset.why = why;
    fallback.hidden = false;
  };
  if (!track.tiles || typeof L === "undefined") {
    useFallback(track.tiles ? "no-leaflet" : "tiles-off");
  } else {
    box.hidden = false;
    fallback.hidden = true;
    const map = L.map(box);
    const tiles = L.tileLayer(track.tiles.url, {attribution: track.tiles.attribution, maxZoom: 19});
    let loaded = 0, failed = 0;
    tiles.on("tileload", () => { loaded += 1; box.dataset.tilesLoaded = loaded; box.dataset.mode = "tiles"; });
    tiles.on("tileerror", () => { failed += 1; if (!loaded && failed >= 4) useFallback("tiles-failed"); });
    tiles.addTo(map);
    const lines = track.days.map((day) =>
      L.polyline(day.points, {color: day.colour, weight: 3, className: "track-line"}).bindTooltip(day.day));
    const ends = L.layerGroup().addTo(map);
    const show = (index) => {
      const chosen = index === 0 ? track.days : [track.days[index - 1]];
      // The view first: Leaflet places a line only on a map that has one.
      map.fitBounds(L.latLngBounds(chosen.flatMap((day) => day.points)).pad(0.1));
      lines.forEach((line, i) => {
        if (index === 0 || i === index - 1) line.addTo(map); else line.remove();
      });
      ends.clearLayers();
      const first = chosen[0].points[0], lastDay = chosen[chosen.length - 1];
      const last = lastDay.points[lastDay.points.length - 1];
      L.circleMarker(first, {radius: 7, color: "#188038", fillOpacity: 1, className: "track-start"}).bindTooltip("first fix").addTo(ends);
      L.circleMarker(last, {radius: 7, color: "#d93025", fillOpacity: 1, className: "track-end"}).bindTooltip("last fix").addTo(ends);
      shown.textContent = index === 0 ? "all days" : chosen[0].day;
      box.dataset.shownDays = chosen.map((day) => day.day).join(",");
    };
    slider.addEventListener("input", () => show(Number(slider.value)));
    show(0);
  }
})();
