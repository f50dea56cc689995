// Package account is the domain of Chronicle's bank example: a bank
// account as an event-sourced aggregate, its events, and an in-memory read
// model of balances.
//
// # Aggregate
//
// [Account] embeds [aggregate.Base]. Its commands [Account.Open],
// [Account.Deposit] and [Account.Withdraw] validate and record
// [AccountOpened], [DepositCompleted] and [WithdrawalCompleted]; a
// withdrawal larger than the balance is refused with an error matching
// [ErrInsufficientFunds] and records nothing. [NewRepository] returns the
// repository that loads and saves accounts.
//
// # Read model
//
// [Balances] reads every event after its checkpoint in global order and
// keeps each account's balance, the way a projection does.
package account
