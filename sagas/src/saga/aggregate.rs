//! The cqrs-es binding of the [`OrderSaga`]: `handle` writes what `decide` decided, `apply`
//! delegates to the state's mutation. No rule lives here.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

use super::command::SagaCommand;
use super::error::SagaError;
use super::event::SagaEvent;
use super::policy::SagaPolicy;
use super::state::OrderSaga;

impl Aggregate for OrderSaga {
    const TYPE: &'static str = "OrderSaga";
    type Command = SagaCommand;
    type Event = SagaEvent;
    type Error = SagaError;
    /// Step timeouts and retry limits.
    type Services = SagaPolicy;

    async fn handle(
        &mut self,
        command: Self::Command,
        policy: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command, policy)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_change(&event.change);
    }
}
