"""Wide screens: each sending mailing's messages per minute over the last hour (its 60
whole minutes), one line each (a name, a sparkline, the speed now and the hour's range),
from the minutes the engines store, so that a dashboard opened now draws the hour at
once."""

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from sendstatus_tui.views.cells import per_minute
from sendstatus_tui.views.snapshot import Row


def chart_figures(row: Row) -> str:
    """What a chart's line ends with, e.g. "now 1,200/min · hour 0–1,500/min"."""
    now = per_minute(row.speed) or "0/min"
    low, top = min(row.chart, default=0), max(row.chart, default=0)
    return f"now {now} · hour {low:,}–{top:,}/min"


def _title(row: Row) -> str:
    return f"{row.mailing_id} {row.name}"


class ChartLine(Horizontal):
    """One mailing's line. Its parts are made with it, so that it can be shown a newer row
    before it is composed (two refreshes or resizes in a row)."""

    def __init__(self, row: Row):
        super().__init__(id=f"chart-{row.mailing_id}", classes="chart-line")
        self._title_label = Label(_title(row), classes="chart-name")
        self._sparkline = Sparkline(row.chart, classes="chart-spark")
        self._figures_label = Label(chart_figures(row), classes="chart-figures")

    def compose(self) -> ComposeResult:
        yield from (self._title_label, self._sparkline, self._figures_label)

    def show(self, row: Row) -> None:
        self._title_label.update(_title(row))
        self._sparkline.data = list(row.chart)
        self._figures_label.update(chart_figures(row))


class ThroughputCharts(Vertical):
    """The lines, kept in step with Sending now's rows by mailing. Its note is made with
    it, as a line's parts are: the first snapshot can come before it is composed."""

    def __init__(self, *, id: str | None = None):  # noqa: A002  (Textual's name)
        super().__init__(id=id)
        self._nothing_sending = Static("nothing is sending", id="charts-empty")

    def compose(self) -> ComposeResult:
        yield self._nothing_sending

    def show(self, rows: list[Row]) -> None:
        lines = {line.id: line for line in self.query(ChartLine)}
        wanted = {f"chart-{row.mailing_id}": row for row in rows}
        for key, line in lines.items():
            if key not in wanted:
                line.remove()
        for key, row in wanted.items():
            if key in lines:
                lines[key].show(row)
            else:
                self.mount(ChartLine(row))
        self._nothing_sending.display = not rows
