"""Review: one component at a time — strip grid, heat map, scores, teammates' reviews, and the label form."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from annotator import imaging, review, services, strips, ui
from db import queries as q
from db import review_queue
from db.records import ComponentInfo, QueueItem
from db.engine import read_session
from core.errors import AtelierError

ctx = ui.context()
cset = ui.require_set(ctx)
renderer = ui.renderer(ctx)
name = ui.require_reviewer("review components")
state = st.session_state
state.setdefault("rv.history", [])
presets = services.layer_presets(renderer)


KEYS_BACK_SCRIPT = """<script>
if (!window.atelierKeysBack) {
  window.atelierKeysBack = true;
  window.parent.document.addEventListener("keydown", (event) => {
    const box = event.target;
    if (!box || !["INPUT", "TEXTAREA"].includes(box.tagName)) return;
    const label = box.getAttribute("aria-label") || "";
    const tabOut = event.key === "Tab" && !event.shiftKey && ["Label", "Note"].includes(label);
    const leaves = event.key === "Escape" || tabOut;
    if (!leaves) return;
    event.preventDefault();
    box.blur();
  }, true);
}
</script>"""


def layer_key(component_id: int, part: str = "preset") -> str:
    """Each component keeps its own layer choice: one component's "coarse" must never carry over to the next."""
    return f"rv.{part}.{component_id}"


def open_layers(component: ComponentInfo, last_approved: tuple[int, int] | None) -> review.OpeningLayers:
    """The layer choice a component opens on, set once per visit before its widgets exist."""
    opening = review.opening_layers(component, last_approved, presets)
    # Not a widget key, so it outlives the widgets Streamlit forgets while another component is shown.
    state[layer_key(component.id, "opening")] = opening
    if state.get(layer_key(component.id)) is None:
        state[layer_key(component.id)] = opening.preset
        start, stop = opening.custom or presets.get(opening.preset, presets["all"])
        state[layer_key(component.id, "custom_start")] = start
        state[layer_key(component.id, "custom_stop")] = stop
    return opening


def settings(component_id: int, opening: review.OpeningLayers | None = None) -> review.StripSettings:
    """What the strip of this component shows, and therefore exactly what A records for it."""
    opening = opening or state.get(layer_key(component_id, "opening")) or review.OpeningLayers("all")
    preset = state.get(layer_key(component_id)) or opening.preset or "all"
    custom = None
    if preset == "custom":
        fallback = opening.custom or presets["all"]
        start = int(state.get(layer_key(component_id, "custom_start"), fallback[0]))
        stop = int(state.get(layer_key(component_id, "custom_stop"), fallback[1]))
        custom = (start, stop) if start < stop else presets["all"]
    return review.StripSettings(preset=preset, layer_range=custom, max_sigma=float(state.get("rv.max_sigma") or 3),
                                steps=int(state.get("rv.steps") or 7), centred=bool(state.get("rv.centred")))


def seeds() -> list[int]:
    return cset.review_seeds or [0, 1, 2, 3, 4, 5]


def current_queue() -> list[QueueItem]:
    return review.queue(ctx.url, name, cset.id)


def go_to(component_id: int | None, remember: bool = True) -> None:
    previous = state.get("rv.current")
    if remember and previous is not None and previous != component_id:
        state["rv.history"].append(previous)
    state["rv.current"] = component_id
    state.pop("rv.shown", None)


def decide(decision: str, component_id: int) -> None:
    if component_id != state.get("rv.current"):
        return  # a press on the previous component's form while the page was still changing: ignore it
    form = review.ReviewForm(
        label=state.get(f"rv.label.{component_id}") or "",
        category=state.get(f"rv.category.{component_id}"),
        consistency=state.get(f"rv.consistency.{component_id}"),
        note=state.get(f"rv.note.{component_id}") or "",
    )
    chosen = settings(component_id)
    shown = state.get("rv.shown")
    spent = time.monotonic() - shown[1] if shown and shown[0] == component_id else None
    try:
        review.record(ctx.url, name, component_id, decision, form, layer_range=chosen.layers(renderer),
                      strength_range=(-chosen.max_sigma, chosen.max_sigma), seconds_spent=spent)
    except AtelierError as exc:
        state["rv.error"] = str(exc)
        return
    state.pop("rv.error", None)
    state["rv.flash"] = f"{decision.capitalize()} recorded for component {state.get('rv.index', '')}."
    upcoming = [item.component_id for item in current_queue() if item.component_id != component_id]
    go_to(upcoming[0] if upcoming else component_id)


def next_component() -> None:
    following = review.after(current_queue(), state.get("rv.current"))
    if following is None:
        state["rv.flash"] = "That was the last component in your queue."
        return
    go_to(following)


def previous_component() -> None:
    if state["rv.history"]:
        go_to(state["rv.history"].pop(), remember=False)
    else:
        state["rv.flash"] = "Nothing earlier in this session."


def jump() -> None:
    try:
        component = review.component_by_index(ctx.url, cset.id, int(state["rv.jump"]))
    except AtelierError as exc:
        state["rv.error"] = str(exc)
        return
    go_to(component.id)


def resample() -> None:
    # Stored with the set, so every reviewer (and the next session) sees the same seeds; the old ones can come back.
    fresh, previous = review.resample_seeds(ctx.url, cset.id, len(seeds()))
    state["rv.previous_seeds"] = previous
    state["rv.flash"] = f"New review seeds for everyone on this set: {', '.join(map(str, fresh))}."


def use_preset(component_id: int, name: str) -> None:
    state[layer_key(component_id)] = name


def restore_previous_seeds() -> None:
    previous = state.pop("rv.previous_seeds", None)
    if previous:
        review.restore_seeds(ctx.url, cset.id, previous)
        state["rv.flash"] = f"Review seeds restored: {', '.join(map(str, previous))}."


# --- which component -------------------------------------------------------------------------------------------
items = current_queue()
if state.get("rv.current") is None and str(st.query_params.get("c", "")).isdigit():
    # A reload starts a new session; the URL (?c=index) keeps the reviewer's place.
    try:
        state["rv.current"] = review.component_by_index(ctx.url, cset.id, int(st.query_params["c"])).id
    except AtelierError:
        pass  # a set with fewer components now: start from the queue
if state.get("rv.current") is None:
    if not items:
        st.success("Your queue is empty: you have reviewed every component. Pick one by number to look again.")
    state["rv.current"] = items[0].component_id if items else None
with read_session(ctx.url) as session:
    all_components = q.list_components(session, cset.id)
    by_id = {c.id: c for c in all_components}
    component = by_id.get(state.get("rv.current")) or all_components[0]
    vector = q.component_vector(session, component.id)
    status = review_queue.component_status(session, component.id)
    mine = q.latest_review(session, name, component.id)
state["rv.current"] = component.id
state["rv.index"] = component.index
if st.query_params.get("c") != str(component.index):
    st.query_params["c"] = str(component.index)
state["rv.jump"] = component.index  # the "Go to #" box shows where you are, like a page number
opening = open_layers(component, review.last_approved_layers(ctx.url, name, [component.id])[component.id])
if not state.get("rv.shown") or state["rv.shown"][0] != component.id:
    state["rv.shown"] = (component.id, time.monotonic())

# --- header and navigation ---------------------------------------------------------------------------------------
head, nav = st.columns([3, 2], vertical_alignment="bottom")
with head:
    st.title(f"Component {component.index}")
    left = sum(1 for item in items if not item.skipped)
    st.caption(f"Status: {status.status.replace('_', ' ')} · σ = {component.sigma:.3f} · "
               f"{left} left in your queue of {len(all_components)}")
with nav:
    with st.container(horizontal=True, horizontal_alignment="right", vertical_alignment="bottom"):
        st.button("Previous", icon=":material/arrow_back:", on_click=previous_component, shortcut="P", key="rv.prev")
        st.button("Next", icon=":material/arrow_forward:", on_click=next_component, shortcut="N", key="rv.next")
        st.button("←", on_click=previous_component, shortcut="Left", key="rv.prev.arrow", type="tertiary",
                  help="Previous (left arrow)")
        st.button("→", on_click=next_component, shortcut="Right", key="rv.next.arrow", type="tertiary",
                  help="Next (right arrow)")
        st.number_input("Go to #", min_value=0, max_value=len(all_components) - 1, step=1, key="rv.jump",
                        on_change=jump, width=110)

if state.get("rv.flash"):
    st.toast(state.pop("rv.flash"))
if state.get("rv.error"):
    st.error(ui.md(state.pop("rv.error")))  # it quotes what was typed

# --- view controls ------------------------------------------------------------------------------------------------
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.segmented_control("Layers", list(presets) + ["custom"], key=layer_key(component.id),
                         help="Which ws rows the edit moves: coarse = pose and shape, middle = garment parts, "
                              "fine = colour and texture.")
    suggested_layers = component.layer_sensitivity
    if suggested_layers in presets and state.get(layer_key(component.id)) != suggested_layers:
        # The scores' layer group is where this component changes the image most; its edit there is often purer.
        st.button(f"Try {suggested_layers}", icon=":material/tips_and_updates:", on_click=use_preset,
                  args=(component.id, suggested_layers), key="rv.suggested_layers",
                  help="Show the strip on the layer group where this component changes the image most (from the "
                       "automatic scores); approving then records that range.")
    if state.get(layer_key(component.id)) == "custom":
        st.number_input("From row", 0, renderer.num_ws - 1, key=layer_key(component.id, "custom_start"), width=110)
        st.number_input("To row (excl.)", 1, renderer.num_ws, key=layer_key(component.id, "custom_stop"), width=130)
    st.segmented_control("Step range (±σ)", [1.0, 2.0, 3.0, 4.0, 5.0], key="rv.max_sigma", default=3.0,
                         format_func=lambda v: f"±{v:g}σ")
    st.segmented_control("Steps", [5, 7, 9], key="rv.steps", default=7)
    st.toggle("Centred", key="rv.centred", help="Remove each seed's own position on this direction first, so the "
                                                 "middle column is the same neutral point for every seed.")
    st.button("Resample seeds", icon=":material/casino:", on_click=resample, key="rv.resample",
              help="Draw new seeds for this set's strips; every reviewer sees the same ones.")
    if state.get("rv.previous_seeds"):
        st.button("Previous seeds", icon=":material/undo:", on_click=restore_previous_seeds, key="rv.unresample",
                  help="Undo the resample: put the seeds from before it back.")

chosen = settings(component.id)
request = review.strip_request(ctx, component, vector, chosen, renderer, seeds())
first_view = st.empty()  # a real-size network's strip, not yet rendered, shows a quick low-resolution view meanwhile
try:
    images = strips.get_strip(request, renderer, on_first_view=lambda view: first_view.image(
        imaging.data_url(view.grid), caption="A quick low-resolution view; the full strip is rendering …",
        width="stretch"))
except AtelierError as exc:
    st.error(ui.md(exc))
    st.stop()
first_view.empty()

# --- strip, heat map, scores | label form, teammates ----------------------------------------------------------------
main, side = st.columns([3, 2], gap="large")
with main:
    st.image(imaging.data_url(images.grid), width="stretch")
    start, stop = chosen.layers(renderer)
    st.caption(f"Rows: seeds {', '.join(str(s) for s in request.spec.seeds)} · columns: steps in σ of this "
               f"component · layers {start}–{stop - 1} of {renderer.num_ws} (approving records these; opened on "
               f"{opening.why})")
    heat_col, score_col = st.columns([1, 2])
    with heat_col:
        st.image(imaging.data_url(images.heat), caption="Where it changes", width="stretch")
    with score_col:
        st.subheader("Automatic scores")
        done, total = review_queue.scoring_progress(all_components)
        progress_note = (f"Scoring: {done} of {total} components scored so far; the queue places the others by "
                         "their eigenvalue until their scores arrive.") if total and done < total else ""
        scoring = services.scoring_state(cset.id)
        if component.effect is None:
            failed = scoring.startswith("Scoring failed")
            st.caption(scoring if failed else progress_note or scoring
                       or "Not scored yet (Models page → Score this set).")
        else:
            best = review_queue.parse_score_details(component.score_details).get("best") or {}
            a, b, c = st.columns(3)
            if "visible" in best:  # scored with reasons: the share of the look that visibly changes leads
                a.metric("Visible", f"{best['visible']:.1%}", help="Share of the look whose colour visibly changes "
                         "at ±2σ, at the strip's size, on the reading the component is ranked by.")
            else:
                a.metric("Effect", f"{component.effect:.3f}")
            b.metric("Consistency", f"{component.consistency:.2f}")
            c.metric("Locality", f"{component.locality:.2f}", help=f"Where: {ui.md(component.locality_where or '—')}")
            a.metric("Colour share", f"{component.colour_share:.2f}")
            b.metric("Layers", ui.md(component.layer_sensitivity or "—"))
            c.metric("Priority", f"{component.priority:.2f}" if component.priority is not None else "—")
            st.text(f"Suggested category: {component.suggested_category or '—'}"
                    + ("   (marked dead: barely changes anything)" if component.dead else ""))
            # "Why is this here?": the priority's ingredients in one line, as `atelier queue` prints them.
            st.text(f"Why here: {review_queue.score_reason(component)}")
            if progress_note:
                st.caption(progress_note)

with side:
    cats = ui.categories(ctx.url)
    # Your own earlier category, else the scores' suggestion; never a teammate's (their review shows below).
    suggested = (mine.category if mine else None) or component.suggested_category
    with st.form(f"rv.form.{component.id}", enter_to_submit=False, border=True):
        st.text_input("Label", value=mine.label if mine else "", key=f"rv.label.{component.id}",
                      placeholder="What changes? e.g. longer sleeves", max_chars=200)
        st.selectbox("Category", cats, index=cats.index(suggested) if suggested in cats else None,
                     key=f"rv.category.{component.id}", placeholder="Choose a category")
        st.segmented_control("Consistency across seeds (1 = different on each, 5 = the same everywhere)",
                             [1, 2, 3, 4, 5], default=mine.consistency if mine else None,
                             key=f"rv.consistency.{component.id}")
        st.text_area("Note", value=mine.note if mine else "", key=f"rv.note.{component.id}", height=68)
        with st.container(horizontal=True):
            st.form_submit_button("Approve", type="primary", icon=":material/check:", shortcut="A",
                                  on_click=decide, args=("approve", component.id))
            st.form_submit_button("Reject", icon=":material/close:", shortcut="X",
                                  on_click=decide, args=("reject", component.id))
            st.form_submit_button("Unsure", icon=":material/help:", shortcut="U",
                                  on_click=decide, args=("unsure", component.id))
            st.form_submit_button("Skip", icon=":material/skip_next:", shortcut="S",
                                  on_click=decide, args=("skip", component.id))
    st.caption("Keys: A approve · X reject · U unsure · S skip · N / → next · P / ← previous "
               "(after typing in a box, Esc or Tab gives the keys back).")
    # Streamlit ignores shortcuts while a text box has the focus, and nothing but a click took it away. Esc, or Tab
    # out of the label or note, now leaves the box (which also commits what was typed to the form).
    st.html(KEYS_BACK_SCRIPT, unsafe_allow_javascript=True, width=1)
    if mine:
        st.caption(f"Your current review: {mine.decision}")
    st.subheader("Teammates")
    others = review.teammates(ctx.url, component.id, name)
    if others:
        st.dataframe(pd.DataFrame([{
            "reviewer": r.reviewer, "decision": r.decision, "label": r.label, "category": r.category or "",
            "consistency": r.consistency, "note": r.note, "when": r.created_at.strftime("%Y-%m-%d %H:%M"),
        } for r in others]), hide_index=True, width="stretch")
    else:
        st.caption("No one else has reviewed this component yet.")

# --- render the next ones ahead of time ------------------------------------------------------------------------------
ahead = review.upcoming(items, component.id, 2)
if ahead:
    with read_session(ctx.url) as session:
        wanted = [(by_id[cid], q.component_vector(session, cid)) for cid in ahead if cid in by_id]
    approved = review.last_approved_layers(ctx.url, name, [c.id for c, _ in wanted])
    # Each one on the layers it will open on, so the prefetched strip is the one shown.
    strips.prefetcher().submit(
        [review.strip_request(ctx, c, v, settings(c.id, review.opening_layers(c, approved[c.id], presets)), renderer,
                              seeds()) for c, v in wanted], renderer)
